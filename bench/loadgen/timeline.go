package main

import (
	"sync/atomic"
	"time"
)

// A storm window's round trips, by when they were sent: S7's stayers' p99
// is set by the longest stall of the storm (with 1% of the round trips
// behind it, a stall of every stayer's one message meets it), and a
// timeline shows when that stall came: as the old connections ended, as
// the new ones shook hands, or all along.
const (
	timelineSlot  = 250 * time.Millisecond
	timelineSlots = 240 // a minute
)

// timeline counts round trips and their slowest by the slot of their send
// time from start; safe for concurrent use.
type timeline struct {
	start time.Time
	slots [timelineSlots]struct {
		n   atomic.Int64
		max atomic.Int64 // nanoseconds
	}
}

// record counts a round trip sent at sent that took rtt; sends past the
// last slot count in no slot.
func (tl *timeline) record(sent time.Time, rtt time.Duration) {
	d := sent.Sub(tl.start)
	i := int(d / timelineSlot)
	if d < 0 || i >= timelineSlots {
		return
	}
	s := &tl.slots[i]
	s.n.Add(1)
	raiseMax(&s.max, int64(rtt))
}

// slotSummary is one slot of a window's timeline in stay mode's RESULT.
type slotSummary struct {
	At  float64 `json:"at_s"`   // the slot's start, seconds from the window's
	N   int64   `json:"n"`      // round trips sent in it
	Max float64 `json:"max_ms"` // the slowest of them
}

// summary returns the slots up to the last with a round trip.
func (tl *timeline) summary() []slotSummary {
	last := -1
	for i := range tl.slots {
		if tl.slots[i].n.Load() > 0 {
			last = i
		}
	}
	out := make([]slotSummary, last+1)
	for i := range out {
		s := &tl.slots[i]
		out[i] = slotSummary{
			At:  round3((time.Duration(i) * timelineSlot).Seconds()),
			N:   s.n.Load(),
			Max: round3(time.Duration(s.max.Load()).Seconds() * 1000),
		}
	}
	return out
}
