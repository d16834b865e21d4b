package l4

import "sync"

// connLimit bounds the connections of one listener. It outlives a
// reload: the servers of the old and the new configuration share it, so
// that the connections the old one still holds count against the new
// limit too, which a reload may change (setMax).
type connLimit struct {
	mu    sync.Mutex
	max   int           // 0: no limit
	used  int           // slots taken
	freed chan struct{} // closed, and replaced, when a slot is given back
	// waiting: someone holds freed; a slot given back while nobody waits
	// costs no new channel.
	waiting bool
}

func newConnLimit(max int) *connLimit {
	return &connLimit{max: max, freed: make(chan struct{})}
}

// take takes a slot if one is free. Otherwise it returns a channel that is
// closed when one may have become free (a slot given back, or a larger
// limit).
func (l *connLimit) take() (ok bool, wait <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.used >= l.max {
		l.waiting = true
		return false, l.freed
	}
	l.used++
	return true, nil
}

// takeAnyway takes a slot even over the limit, for a connection accepted
// elsewhere (moved from an old process): it is there already.
func (l *connLimit) takeAnyway() {
	l.mu.Lock()
	l.used++
	l.mu.Unlock()
}

// give gives a slot back.
func (l *connLimit) give() {
	l.mu.Lock()
	l.used--
	l.wakeLocked()
	l.mu.Unlock()
}

// setMax changes the limit; connections over a lowered one stay, and no
// new one is taken until they are under it.
func (l *connLimit) setMax(max int) {
	l.mu.Lock()
	l.max = max
	l.wakeLocked()
	l.mu.Unlock()
}

func (l *connLimit) wakeLocked() {
	if l.waiting {
		close(l.freed)
		l.freed, l.waiting = make(chan struct{}), false
	}
}
