// Package demo is the main job of `ycq run` (and of the QEMU guest): it
// streams a given amount of data through a ycq device's queue pairs with the
// host driver, verifies every response, and reports throughput, latency and
// how often the host and the device had to notify each other.
package demo

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/hostdriver"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// Options of a run.
type Options struct {
	Size    int64  // bytes of request payload to send, in all
	Queues  int    // queue pairs
	Engine  uint32 // devicemodel.Engine*
	Payload int    // bytes a request
	Slots   int    // slots a queue; 256 if 0
	Driver  hostdriver.Config
	// ResizeEvery, if not 0, formats the queues resizable and resizes
	// every pair's two queues this often while the stream runs, growing
	// and shrinking them around Slots (hostdriver.Pair.Resize).
	ResizeEvery time.Duration
	// Progress, if set, is called about five times a second with the
	// bytes sent and answered so far.
	Progress func(done, total int64)
}

// Result is what a run measured.
type Result struct {
	Bytes      int64
	Records    int64
	Elapsed    time.Duration
	P50, P99   time.Duration
	Doorbells  uint64
	Interrupts uint64
	Queues     int
	Payload    int
	Engine     uint32
	// Resizes is how many pair resizes completed during the stream, and
	// ResizeP50 and ResizeMax how long one took (from its start to the
	// old generation given back).
	Resizes              int
	ResizeP50, ResizeMax time.Duration
	ResizeEvery          time.Duration
	// ResizesStarted and ResizesRolledBack count every pair's resizes
	// begun and undone; ResizeDraining is the time they spent waiting
	// for old generations to drain.
	ResizesStarted, ResizesRolledBack uint64
	ResizeDraining                    time.Duration
}

// Run brings the device up, streams, checks, and closes the driver.
func Run(ctx context.Context, dev vfio.Device, o Options) (Result, error) {
	if o.Payload < record.PlainSize || o.Queues < 1 || o.Size < int64(o.Payload) {
		return Result{}, fmt.Errorf("demo: payload %d, queues %d, size %d: want a payload of at least %d bytes, a queue pair, and at least one record", o.Payload, o.Queues, o.Size, record.PlainSize)
	}
	cfg := o.Driver
	cfg.Queues, cfg.Engine = o.Queues, o.Engine
	cfg.Slots = o.Slots
	if cfg.Slots == 0 {
		cfg.Slots = 256
	}
	cfg.SlotSize = (o.Payload + 7) &^ 7
	if o.ResizeEvery > 0 {
		cfg.Resizable = true
	}
	drv, err := hostdriver.Open(dev, cfg)
	if err != nil {
		return Result{}, err
	}
	defer drv.Close()
	records := o.Size / int64(o.Payload)
	res := Result{Queues: o.Queues, Payload: o.Payload, Engine: o.Engine}
	var done atomic.Int64
	stopProgress := make(chan struct{})
	var pw sync.WaitGroup
	if o.Progress != nil {
		pw.Go(func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					o.Progress(done.Load()*int64(o.Payload), records*int64(o.Payload))
				}
			}
		})
	}
	start := time.Now()
	streams := make([]*pairStream, o.Queues)
	for i := range streams {
		n := records / int64(o.Queues)
		if i < int(records%int64(o.Queues)) {
			n++
		}
		streams[i] = newPairStream(n, o.Payload, o.Engine)
	}
	// One goroutine drives every pair, run to completion.
	loop := hostdriver.Stream{
		Window: capacity,
		Request: func(p *hostdriver.Pair, b []byte) (int, bool) {
			return streams[p.Index()].request(p.Index(), b)
		},
		Response: func(p *hostdriver.Pair, b []byte) error {
			if err := streams[p.Index()].response(p.Index(), b); err != nil {
				return err
			}
			done.Add(1)
			return nil
		},
	}
	var resizeErr error
	var rw sync.WaitGroup
	streamCtx, streamDone := context.WithCancel(ctx)
	if o.ResizeEvery > 0 {
		res.ResizeEvery = o.ResizeEvery
		rw.Go(func() { resizeErr = resizeLoop(streamCtx, drv, cfg.Slots, o.ResizeEvery) })
	}
	err = loop.Run(ctx, drv.Pairs())
	res.Elapsed = time.Since(start)
	streamDone()
	rw.Wait()
	if err == nil {
		err = resizeErr
	}
	close(stopProgress)
	pw.Wait()
	if o.Progress != nil {
		o.Progress(done.Load()*int64(o.Payload), records*int64(o.Payload))
	}
	if err != nil {
		return res, err
	}
	res.Records = done.Load()
	res.Bytes = res.Records * int64(o.Payload)
	var all []time.Duration
	for i, p := range drv.Pairs() {
		all = append(all, streams[i].lat...)
		st := p.Stats()
		res.Doorbells += st.Doorbells
		res.Interrupts += st.Interrupts
	}
	slices.Sort(all)
	if len(all) > 0 {
		res.P50 = all[len(all)/2]
		res.P99 = all[min(len(all)-1, int(math.Ceil(0.99*float64(len(all))))-1)]
	}
	var took []time.Duration
	for _, p := range drv.Pairs() {
		st := p.ResizeStats()
		took = append(took, st.Took...)
		res.ResizesStarted += st.Started
		res.ResizesRolledBack += st.RolledBack
		res.ResizeDraining += st.Draining
	}
	slices.Sort(took)
	if res.Resizes = len(took); len(took) > 0 {
		res.ResizeP50, res.ResizeMax = took[len(took)/2], took[len(took)-1]
	}
	return res, drv.Close()
}

// resizeLoop resizes every pair of drv every interval until ctx ends:
// twice slots, half, four times, back to slots, and round again. A resize
// cut short by the end of the stream is no failure.
func resizeLoop(ctx context.Context, drv *hostdriver.Driver, slots int, every time.Duration) error {
	sizes := []int{2 * slots, slots / 2, 4 * slots, slots}
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n := min(max(sizes[i%len(sizes)], 2), ycqdev.MaxSlots)
		for _, p := range drv.Pairs() {
			if err := p.Resize(ctx, n); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("resize pair %d to %d slots: %w", p.Index(), n, err)
			}
		}
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Requests is the format of the demo's requests: internal/record's Plain
// layout without a checksum (the CRC-32C engine computes one; the echo
// engine's response is compared byte for byte): sequence number, pair, then
// a fill. The guest's test streams use it too.
var Requests = record.Format{}

// fill writes request seq of pair.
func fill(b []byte, pair int, seq uint64) {
	Requests.Fill(b, record.Header{Seq: seq, Producer: uint32(pair)})
}

// capacity is how many requests a pair may have in flight: the stream's
// window, and the size of the rings that remember what each one was.
const capacity = 4096

// pairStream is what one pair of the demo sends and expects back: n
// requests, each checked when its response arrives (in order), and the
// latency of one in 16.
type pairStream struct {
	n, sent, got int64
	payload      int
	engine       uint32
	sentAt       []time.Time // by sequence number mod capacity
	crcs         []uint32
	want         []byte
	lat          []time.Duration
}

func newPairStream(n int64, payload int, engine uint32) *pairStream {
	return &pairStream{n: n, payload: payload, engine: engine, sentAt: make([]time.Time, capacity),
		crcs: make([]uint32, capacity), want: make([]byte, payload)}
}

// request fills the next request into b.
func (s *pairStream) request(pair int, b []byte) (int, bool) {
	if s.sent == s.n {
		return 0, false
	}
	k := s.sent
	b = b[:s.payload]
	fill(b, pair, uint64(k))
	if s.engine == ycqdev.EngineCRC32C {
		s.crcs[k%capacity] = crc32.Checksum(b, castagnoli)
	}
	if k%16 == 0 {
		s.sentAt[k%capacity] = time.Now()
	}
	s.sent++
	return s.payload, true
}

// response checks the next response against the request it answers.
func (s *pairStream) response(pair int, b []byte) error {
	k := s.got % capacity
	switch s.engine {
	case ycqdev.EngineCRC32C:
		if len(b) != devicemodel.CRCResponseSize || binary.LittleEndian.Uint32(b) != s.crcs[k] ||
			binary.LittleEndian.Uint32(b[4:]) != uint32(s.payload) {
			return fmt.Errorf("pair %d: response %d is %x, not the CRC-32C of its request", pair, s.got, b)
		}
	case ycqdev.EngineEcho:
		fill(s.want, pair, uint64(s.got))
		if string(b) != string(s.want) {
			return fmt.Errorf("pair %d: response %d does not echo its request", pair, s.got)
		}
	}
	if s.got%16 == 0 {
		s.lat = append(s.lat, time.Since(s.sentAt[k]))
	}
	s.got++
	return nil
}

// Table prints the result as a table.
func (r Result) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	gbps := float64(r.Bytes) / r.Elapsed.Seconds() / 1e9
	rps := float64(r.Records) / r.Elapsed.Seconds()
	per := func(n uint64) string {
		if r.Records == 0 {
			return "-"
		}
		return fmt.Sprintf("%.4f", float64(n)/float64(r.Records))
	}
	fmt.Fprintf(tw, "bytes\t%d (%s)\n", r.Bytes, HumanBytes(r.Bytes))
	fmt.Fprintf(tw, "records\t%d of %d bytes, %s engine, %d queue pairs\n", r.Records, r.Payload, devicemodel.EngineName(r.Engine), r.Queues)
	fmt.Fprintf(tw, "time\t%v\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(tw, "throughput\t%.3f GB/s\n", gbps)
	fmt.Fprintf(tw, "records/s\t%.0f\n", rps)
	fmt.Fprintf(tw, "latency\tp50 %v, p99 %v (request published to response received)\n", r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	fmt.Fprintf(tw, "doorbells/record\t%s (%d)\n", per(r.Doorbells), r.Doorbells)
	fmt.Fprintf(tw, "interrupts/record\t%s (%d)\n", per(r.Interrupts), r.Interrupts)
	if r.ResizeEvery > 0 {
		fmt.Fprintf(tw, "resizes\t%d completed of %d started, %d rolled back (both queues of a pair, every %v); each p50 %v, max %v; draining %v in all\n",
			r.Resizes, r.ResizesStarted, r.ResizesRolledBack, r.ResizeEvery,
			r.ResizeP50.Round(time.Microsecond), r.ResizeMax.Round(time.Microsecond), r.ResizeDraining.Round(time.Microsecond))
	}
	tw.Flush()
}

// HumanBytes writes n with a binary unit.
func HumanBytes(n int64) string {
	const k = 1024
	switch {
	case n >= k*k*k:
		return fmt.Sprintf("%.2f GiB", float64(n)/(k*k*k))
	case n >= k*k:
		return fmt.Sprintf("%.2f MiB", float64(n)/(k*k))
	case n >= k:
		return fmt.Sprintf("%.2f KiB", float64(n)/k)
	}
	return fmt.Sprintf("%d B", n)
}
