package usbhost

import (
	"context"
	"fmt"
	"time"
)

// A request out and its echo back, zero-copy: reserve, fill in place,
// publish; receive, read in place, release, with the queues in the
// device's usbfs memory, which the kernel does not copy either. (The
// device here is the tests' in-memory one; Open finds a real one by
// vendor and product.)
func Example() {
	f := newFake(1)
	f.memory = true
	pl := &plugs{cur: f}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := openWith(ctx, Config{RecordSize: 64, Slots: 64, DeviceMemory: true}, pl.open)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	p := d.Pairs()[0]

	req, _ := p.Reserve(ctx, 1)
	n := copy(req.Slot(0), "ping")
	req.Publish(0, n) // the rest of the 64-byte record is zeroed

	resp, _ := p.Receive(ctx, 1)
	b, _ := resp.Slot(0)
	fmt.Printf("%q, %d bytes\n", b[:4], len(b))
	resp.ReleaseAll()
	fmt.Println("copies:", p.Stats().Copies)
	// Output:
	// "ping", 64 bytes
	// copies: 0
}
