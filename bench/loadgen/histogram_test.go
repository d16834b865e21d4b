package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 123456789, 1 << 40, math.MaxInt64, math.MaxUint64} {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d out of range", v, i)
		}
		if hi := bucketHigh(i); hi < v {
			t.Errorf("bucketHigh(bucketOf(%d)) = %d < value", v, hi)
		}
		if i > 0 {
			if lo := bucketHigh(i-1) + 1; lo > v {
				t.Errorf("bucket %d of %d starts at %d", i, v, lo)
			}
		}
	}
	// Buckets tile the values without gaps.
	for i := 1; i < numBuckets; i++ {
		if got := bucketOf(bucketHigh(i-1) + 1); got != i {
			t.Fatalf("value after bucket %d falls in bucket %d", i-1, got)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Fatal("empty histogram has a median")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var vals []time.Duration
	for range 100000 {
		d := time.Duration(rng.ExpFloat64() * float64(time.Millisecond))
		vals = append(vals, d)
		h.record(d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/subCount+1 {
			t.Errorf("q%g = %v, exact %v", q, got, exact)
		}
	}
	if h.maximum() != vals[len(vals)-1] || h.count() != uint64(len(vals)) {
		t.Errorf("max %v count %d", h.maximum(), h.count())
	}
}
