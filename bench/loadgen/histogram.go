package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram layout: values (nanoseconds) below 2^(subBits+1) have a bucket
// each; above, every power of two is split into 2^subBits buckets, so a
// bucket's width is under 1/2^subBits (1.6%) of its values.
const (
	subBits    = 6
	subCount   = 1 << subBits // buckets per power of two
	linearTop  = 2 * subCount // values below this are exact
	numBuckets = linearTop + (64-subBits-1)*subCount
)

// histogram is a lock-free log-linear histogram of durations, in the
// spirit of HDR histograms: safe for concurrent record and quantile calls.
type histogram struct {
	counts [numBuckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64
}

// record adds one duration (negative ones count as 0).
func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))].Add(1)
	h.total.Add(1)
	raiseMax(&h.max, v)
}

// raiseMax sets *m to v if v is larger, concurrently with other callers.
func raiseMax(m *atomic.Int64, v int64) {
	for cur := m.Load(); v > cur && !m.CompareAndSwap(cur, v); cur = m.Load() {
	}
}

// count returns the number of recorded values.
func (h *histogram) count() uint64 { return h.total.Load() }

// maximum returns the largest recorded value, exactly.
func (h *histogram) maximum() time.Duration { return time.Duration(h.max.Load()) }

// quantile returns the q-quantile (0 < q <= 1): the highest value of the
// bucket holding the ceil(q*count)-th smallest value, capped at the
// maximum. It returns 0 when nothing has been recorded.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q * float64(n))
	if float64(rank) < q*float64(n) {
		rank++
	}
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(time.Duration(bucketHigh(i)), h.maximum())
		}
	}
	return h.maximum() // records racing with this call
}

// bucketOf returns the bucket index of v.
func bucketOf(v uint64) int {
	if v < linearTop {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1) // >= 1
	return linearTop + (shift-1)*subCount + int(v>>shift) - subCount
}

// bucketHigh returns the highest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < linearTop {
		return uint64(i)
	}
	shift := (i-linearTop)/subCount + 1
	sub := uint64((i-linearTop)%subCount + subCount)
	return (sub+1)<<shift - 1
}
