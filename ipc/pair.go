package ipc

import (
	"errors"
	"fmt"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/ring"
)

// Geometry is the shape of both queues of a pair.
type Geometry struct {
	Slots    int `json:"slots"`
	SlotSize int `json:"slot_size"`
	// Resizable makes both queues resizable (ring.Resizable): the server
	// may grow and shrink them while the session runs (see resize.go).
	Resizable bool `json:"resizable,omitempty"`
}

// Limits on what a client may ask a server to allocate.
const (
	MaxSlots     = 1 << 16
	MaxSlotSize  = 1 << 20
	MaxPairBytes = 1 << 30
)

// config is the queues' configuration: each queue of a session has exactly
// one producer and one consumer.
func (g Geometry) config() ring.Config {
	return ring.Config{Slots: g.Slots, SlotSize: g.SlotSize, SingleProducer: true, SingleConsumer: true, Resizable: g.Resizable}
}

// Validate checks the geometry against ring's rules and this package's
// limits.
func (g Geometry) Validate() error {
	if err := g.config().Validate(); err != nil {
		return err
	}
	if g.Slots > MaxSlots || g.SlotSize > MaxSlotSize || 2*g.Slots*g.SlotSize > MaxPairBytes {
		return fmt.Errorf("%w: %d slots of %d bytes: over this package's limits (%d slots, %d bytes a slot, %d bytes in all)",
			ring.ErrInvalid, g.Slots, g.SlotSize, MaxSlots, MaxSlotSize, MaxPairBytes)
	}
	return nil
}

// regionNames are the suffixes of a pair's four regions, in the order their
// descriptors travel.
var regionNames = [4]string{"up.meta", "up.data", "down.meta", "down.data"}

func (g Geometry) sizes() [4]int {
	m, d := g.config().MetaSize(), g.config().DataSize()
	return [4]int{m, d, m, d}
}

// Pair is two queues in four shared regions.
type Pair struct {
	Geometry Geometry
	Up       *ring.Queue // client to server
	Down     *ring.Queue // server to client
	regions  [4]*dma.Region
	shmName  string // set when this side created named regions
	shmOpt   dma.Options
}

// CreatePair lays out a new pair. With name empty the regions are memfds;
// otherwise they are /dev/shm files named name.up.meta and so on, in
// opt.ShmDir, removed again by Close.
func CreatePair(g Geometry, name string, opt dma.Options) (*Pair, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	p := &Pair{Geometry: g, shmOpt: opt}
	sizes := g.sizes()
	for i, suffix := range regionNames {
		var r *dma.Region
		var err error
		if name == "" {
			r, err = dma.Memfd("ycq-ipc."+suffix, sizes[i], dma.Options{})
		} else {
			r, err = dma.CreateShm(name+"."+suffix, sizes[i], opt)
			if err == nil {
				p.shmName = name
			}
		}
		if err != nil {
			p.Close()
			return nil, err
		}
		p.regions[i] = r
	}
	var err error
	if p.Up, err = ring.Format(p.regions[0].Bytes(), p.regions[1].Bytes(), g.config()); err != nil {
		p.Close()
		return nil, err
	}
	if p.Down, err = ring.Format(p.regions[2].Bytes(), p.regions[3].Bytes(), g.config()); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// FDs returns the four descriptors in the order JoinPair takes them. The
// pair keeps owning them.
func (p *Pair) FDs() []int {
	fds := make([]int, len(p.regions))
	for i, r := range p.regions {
		fds[i] = r.FD()
	}
	return fds
}

// JoinPair maps a pair from the four descriptors another process passed,
// and attaches to both queues, checking them against g. It takes ownership
// of the descriptors, also when it fails.
func JoinPair(fds []int, g Geometry) (*Pair, error) {
	if len(fds) != len(regionNames) {
		for _, fd := range fds {
			closeFD(fd)
		}
		return nil, fmt.Errorf("%w: a pair needs %d descriptors, got %d", ring.ErrInvalid, len(regionNames), len(fds))
	}
	if err := g.Validate(); err != nil {
		for _, fd := range fds {
			closeFD(fd)
		}
		return nil, err
	}
	p := &Pair{Geometry: g}
	sizes := g.sizes()
	var errs []error
	for i, fd := range fds {
		r, err := dma.Map(fd, sizes[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", regionNames[i], err))
			continue
		}
		p.regions[i] = r
	}
	if err := errors.Join(errs...); err != nil {
		p.Close()
		return nil, err
	}
	return p, p.attach()
}

// OpenPair maps a pair by the name its creator gave it.
func OpenPair(name string, g Geometry, opt dma.Options) (*Pair, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	p := &Pair{Geometry: g}
	sizes := g.sizes()
	for i, suffix := range regionNames {
		r, err := dma.OpenShm(name+"."+suffix, opt)
		if err == nil && r.Size() < sizes[i] {
			err = fmt.Errorf("%w: %s holds %d bytes, %d expected", ring.ErrInvalid, r.Name(), r.Size(), sizes[i])
			r.Close()
		}
		if err != nil {
			p.Close()
			return nil, err
		}
		p.regions[i] = r
	}
	return p, p.attach()
}

func (p *Pair) attach() error {
	var err error
	if p.Up, err = ring.Attach(p.regions[0].Bytes(), p.regions[1].Bytes()); err != nil {
		p.Close()
		return fmt.Errorf("up queue: %w", err)
	}
	if p.Down, err = ring.Attach(p.regions[2].Bytes(), p.regions[3].Bytes()); err != nil {
		p.Close()
		return fmt.Errorf("down queue: %w", err)
	}
	for _, q := range []*ring.Queue{p.Up, p.Down} {
		if c := q.Config(); c.Slots != p.Geometry.Slots || c.SlotSize != p.Geometry.SlotSize || c.Resizable != p.Geometry.Resizable {
			p.Close()
			return fmt.Errorf("%w: queue is %d slots of %d bytes (resizable %v), %d of %d (resizable %v) expected",
				ring.ErrCorrupt, c.Slots, c.SlotSize, c.Resizable, p.Geometry.Slots, p.Geometry.SlotSize, p.Geometry.Resizable)
		}
	}
	return nil
}

// MetaRegions returns the two metadata regions (up, down), for tools and
// tests that need the raw shared bytes.
func (p *Pair) MetaRegions() [2][]byte { return [2][]byte{p.regions[0].Bytes(), p.regions[2].Bytes()} }

// Unlink removes the names this side created; the mappings stay. Calling
// it again does nothing.
func (p *Pair) Unlink() error {
	if p.shmName == "" {
		return nil
	}
	var errs []error
	for i, r := range p.regions {
		if r != nil {
			if err := dma.RemoveShm(p.shmName+"."+regionNames[i], p.shmOpt); err != nil {
				errs = append(errs, err)
			}
		}
	}
	p.shmName = ""
	return errors.Join(errs...)
}

// Close unmaps the regions, closes their descriptors, and removes the
// names this side created.
func (p *Pair) Close() error {
	errs := []error{p.Unlink()}
	for i, r := range p.regions {
		if r == nil {
			continue
		}
		if err := r.Close(); err != nil {
			errs = append(errs, err)
		}
		p.regions[i] = nil
	}
	p.Up, p.Down = nil, nil
	return errors.Join(errs...)
}
