package ipc

import (
	"math"
	"math/bits"
	"time"
)

// histogram counts latencies in buckets of about 3% width: 32 linear steps
// within each power of two of nanoseconds. Recording allocates nothing.
type histogram struct {
	counts [64 * 32]uint64
	n      uint64
	max    uint64
}

func (h *histogram) bucket(ns uint64) int {
	if ns < 32 {
		return int(ns)
	}
	e := bits.Len64(ns) - 1 // ns in [2^e, 2^(e+1))
	return e*32 + int(ns>>(e-5)&31)
}

func (h *histogram) lower(b int) uint64 {
	if b < 32 {
		return uint64(b)
	}
	e, m := b/32, uint64(b%32)
	return 1<<e + m<<(e-5)
}

// recordN counts n samples of ns.
func (h *histogram) recordN(ns, n uint64) {
	h.counts[h.bucket(ns)] += n
	h.n += n
	h.max = max(h.max, ns)
}

// quantile returns the lower edge of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank && c > 0 {
			return time.Duration(h.lower(b))
		}
	}
	return time.Duration(h.max)
}
