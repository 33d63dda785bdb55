package usbdev

import (
	"fmt"
	"testing"
	"time"

	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// BenchmarkEcho measures records through one pair of the device and the
// in-process guest over a socketpair, echo engine, every response checked:
// the device model's own cost, without QEMU or a kernel's xHCI.
func BenchmarkEcho(b *testing.B) {
	for _, size := range []int{64, 16 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			a, c := socketpair(b)
			d, err := New(a, Options{Pairs: 1})
			if err != nil {
				b.Fatal(err)
			}
			errc := served(d)
			g := newGuest(b, c, guestCaps)
			defer func() {
				d.Close()
				g.close()
				<-errc
			}()
			g.handshake()
			g.attach()
			g.setConfiguration(1)
			g.setQueue(0, ycqdev.EngineEcho, size)
			k := usbproto.RecordsPerTransfer(size)
			s := stream{pair: 0, engine: ycqdev.EngineEcho, recSize: size, records: b.N, perTransfer: k,
				inFlight: 8, inLen: min(k, 64) * size}
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			if err := s.run(g); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
		})
	}
}
