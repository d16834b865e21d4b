package main

import "testing"

func TestStallLine(t *testing.T) {
	tl := []slotSummary{{0, 90, 12}, {0.25, 40, 1830}, {0.5, 0, 0}, {0.75, 85, 950}, {1, 97, 1830}}
	if got, want := stallLine(tl, 3), "1830 ms at 0.25 s, 1830 ms at 1 s, 950 ms at 0.75 s"; got != want {
		t.Errorf("stallLine = %q, want %q", got, want)
	}
	if got := stallLine(tl[:1], 4); got != "12 ms at 0 s" {
		t.Errorf("one slot: %q", got)
	}
	if tl[1].At != 0.25 {
		t.Errorf("stallLine sorted its argument: %+v", tl)
	}
	if got := stallLine(nil, 4); got != "" {
		t.Errorf("no slots: %q", got)
	}
}
