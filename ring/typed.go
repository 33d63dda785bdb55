package ring

import (
	"fmt"
	"reflect"
)

// Typed is a view of a queue in which every record is one value of type T,
// read and written in place through a *T into the slot. T must be plain,
// fixed-size data: booleans, integers, floats, complex numbers, and arrays
// and structs of them. Pointers, slices, strings, maps, channels, functions,
// interfaces and uintptr are refused: the bytes are shared with another
// process or a device, where an address means nothing and the garbage
// collector cannot see.
type Typed[T any] struct {
	q    *Queue
	size int
}

// NewTyped returns a typed view of q, or an error wrapping ErrInvalid that
// says why T cannot live in q's slots.
func NewTyped[T any](q *Queue) (*Typed[T], error) {
	t := reflect.TypeFor[T]()
	if err := plainType(t); err != nil {
		return nil, invalidf("type %v: %v", t, err)
	}
	size, align := int(t.Size()), t.Align()
	if size == 0 {
		return nil, invalidf("type %v has size 0", t)
	}
	if size > q.slotSize {
		return nil, invalidf("type %v is %d bytes; the slots hold %d", t, size, q.slotSize)
	}
	if q.slotSize%align != 0 || !aligned(q.data, uintptr(align)) {
		return nil, invalidf("type %v needs %d-byte alignment; the data region or slot size does not give it", t, align)
	}
	return &Typed[T]{q: q, size: size}, nil
}

// plainType reports why t is not plain fixed-size data, or nil if it is.
func plainType(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return nil
	case reflect.Array:
		if err := plainType(t.Elem()); err != nil {
			return fmt.Errorf("element: %w", err)
		}
		return nil
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if err := plainType(f.Type); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
		return nil
	case reflect.Uintptr:
		return fmt.Errorf("uintptr holds an address, which means nothing to the peer")
	default:
		return fmt.Errorf("%v is not plain fixed-size data (it holds or is a reference)", t.Kind())
	}
}

// Queue returns the underlying queue.
func (t *Typed[T]) Queue() *Queue { return t.q }

// Producer returns the typed producing side.
func (t *Typed[T]) Producer() TypedProducer[T] { return TypedProducer[T]{t} }

// Consumer returns the typed consuming side.
func (t *Typed[T]) Consumer() TypedConsumer[T] { return TypedConsumer[T]{t} }

// TypedProducer is the producing side of a Typed view.
type TypedProducer[T any] struct{ t *Typed[T] }

// Reserve reserves exactly n slots, as Producer.Reserve.
func (p TypedProducer[T]) Reserve(n int) (TypedWriteRun[T], error) {
	w, err := p.t.q.reserveWrite(n, true)
	return TypedWriteRun[T]{w: w, size: p.t.size}, err
}

// ReserveUpTo reserves 1 to n slots, as Producer.ReserveUpTo.
func (p TypedProducer[T]) ReserveUpTo(n int) (TypedWriteRun[T], error) {
	w, err := p.t.q.reserveWrite(n, false)
	return TypedWriteRun[T]{w: w, size: p.t.size}, err
}

// TypedWriteRun is a WriteRun whose slots are values of T.
type TypedWriteRun[T any] struct {
	w    WriteRun
	size int
}

// Len is the number of slots in the run.
func (w *TypedWriteRun[T]) Len() int { return w.w.Len() }

// At returns slot i as a *T to fill in place. It panics if i is out of range.
func (w *TypedWriteRun[T]) At(i int) *T { return slotAs[T](w.w.Slot(i)) }

// Publish publishes slot i as one T.
func (w *TypedWriteRun[T]) Publish(i int) error { return w.w.Publish(i, w.size) }

// PublishAll publishes every slot not yet published or aborted.
func (w *TypedWriteRun[T]) PublishAll() error { return w.w.PublishAll(w.size) }

// Abort gives slot i up, as WriteRun.Abort.
func (w *TypedWriteRun[T]) Abort(i int) error { return w.w.Abort(i) }

// AbortAll gives up every slot not yet published, as WriteRun.AbortAll.
func (w *TypedWriteRun[T]) AbortAll() error { return w.w.AbortAll() }

// TypedConsumer is the consuming side of a Typed view.
type TypedConsumer[T any] struct{ t *Typed[T] }

// Reserve reserves exactly n records, as Consumer.Reserve.
func (c TypedConsumer[T]) Reserve(n int) (TypedReadRun[T], error) {
	r, err := c.t.q.reserveRead(n, true)
	return TypedReadRun[T]{r: r, size: c.t.size}, err
}

// ReserveUpTo reserves 1 to n records, as Consumer.ReserveUpTo.
func (c TypedConsumer[T]) ReserveUpTo(n int) (TypedReadRun[T], error) {
	r, err := c.t.q.reserveRead(n, false)
	return TypedReadRun[T]{r: r, size: c.t.size}, err
}

// TypedReadRun is a ReadRun whose records are values of T.
type TypedReadRun[T any] struct {
	r    ReadRun
	size int
}

// Len is the number of records in the run.
func (r *TypedReadRun[T]) Len() int { return r.r.Len() }

// At returns record i in place as a *T. A record whose published length is
// not the size of T gives an error wrapping ErrCorrupt. It panics if i is
// out of range.
func (r *TypedReadRun[T]) At(i int) (*T, error) {
	b, err := r.r.Slot(i)
	if err != nil {
		return nil, err
	}
	if len(b) != r.size {
		return nil, r.r.q.corruptCons("record at position %d is %d bytes; a typed record is %d", r.r.Position(i), len(b), r.size)
	}
	return slotAs[T](b), nil
}

// Release hands record i back to producers.
func (r *TypedReadRun[T]) Release(i int) error { return r.r.Release(i) }

// ReleaseAll releases every record not yet released.
func (r *TypedReadRun[T]) ReleaseAll() error { return r.r.ReleaseAll() }

// AbortFrom gives records i onwards back unread, as ReadRun.AbortFrom.
func (r *TypedReadRun[T]) AbortFrom(i int) error { return r.r.AbortFrom(i) }

// AbortAll gives every record back unread, as ReadRun.AbortAll.
func (r *TypedReadRun[T]) AbortAll() error { return r.r.AbortAll() }
