package ring_test

import (
	"fmt"

	"github.com/ycq-dev/ycq/ring"
)

// A producer reserves two slots, fills them in place and publishes them out
// of order; a consumer reads both in place and releases them.
func Example() {
	q, err := ring.New(ring.Config{Slots: 8, SlotSize: 64})
	if err != nil {
		panic(err)
	}

	w, err := q.Producer().Reserve(2)
	if err != nil {
		panic(err)
	}
	n0 := copy(w.Slot(0), "hello")
	n1 := copy(w.Slot(1), "world")
	_ = w.Publish(1, n1) // nothing is visible until slot 0 is published too
	_ = w.Publish(0, n0)

	r, err := q.Consumer().ReserveUpTo(8)
	if err != nil {
		panic(err)
	}
	for i := range r.Len() {
		b, _ := r.Slot(i)
		fmt.Printf("%d: %s\n", r.Position(i), b)
	}
	_ = r.ReleaseAll()

	_, err = q.Consumer().ReserveUpTo(8)
	fmt.Println(err)
	// Output:
	// 0: hello
	// 1: world
	// ring: empty
}

// A typed view reads and writes values of a plain struct in place.
func ExampleTyped() {
	type sample struct {
		Channel uint16
		Value   int32
	}
	q, _ := ring.New(ring.Config{Slots: 4, SlotSize: 8})
	samples, err := ring.NewTyped[sample](q)
	if err != nil {
		panic(err)
	}
	w, _ := samples.Producer().Reserve(1)
	*w.At(0) = sample{Channel: 3, Value: -40}
	_ = w.PublishAll()

	r, _ := samples.Consumer().Reserve(1)
	s, _ := r.At(0)
	fmt.Printf("channel %d: %d\n", s.Channel, s.Value)
	_ = r.ReleaseAll()

	_, err = ring.NewTyped[string](q)
	fmt.Println(err)
	// Output:
	// channel 3: -40
	// ring: invalid argument: type string: string is not plain fixed-size data (it holds or is a reference)
}
