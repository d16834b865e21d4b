package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"
)

// load is the traffic that runs while instances are reloaded, upgraded
// and killed: new connections at a bounded rate, each a handshake, the
// greeting and one echo, then a clean close; and long-lived connections
// that echo every heldEvery until stopped. Half the openers resume
// sessions (one cache: across instances), half do full handshakes.
type load struct {
	c     *client
	cfg   *tls.Config // with a session cache
	full  *tls.Config // without
	rate  float64
	held  int
	label string

	heldWG sync.WaitGroup // the long-lived connections' goroutines

	mu    sync.Mutex
	conns []connRec
	holds []*holdRec
}

const (
	openers   = 8                      // goroutines opening new connections
	heldEvery = 250 * time.Millisecond // echo period of a long-lived connection
	echoWait  = 5 * time.Second        // an echo not back by then failed
)

// connRec is one new connection under load.
type connRec struct {
	start, end time.Time
	local      string
	instance   int // 0: it failed before the greeting
	resumed    bool
	err        error
}

// holdRec is one long-lived connection.
type holdRec struct {
	id       int
	local    string
	instance int
	echoes   int
	opened   time.Time
	failedAt time.Time
	err      error // the first failure: its end
}

func newLoad(c *client, rate float64, held int, label string) *load {
	return &load{c: c, cfg: c.tlsConfig(0, tls.NewLRUClientSessionCache(64)), full: c.tlsConfig(0, nil), rate: rate, held: held, label: label}
}

// openHeld opens the long-lived connections, before anything happens to
// the fleet; a failure here is a failed connection like any other.
func (l *load) openHeld(ctx context.Context) {
	for i := range l.held {
		h := &holdRec{id: i, opened: time.Now()}
		s, err := l.c.open(ctx, l.cfg)
		if err != nil {
			h.err, h.failedAt = err, time.Now()
		} else {
			h.local, h.instance = s.local, s.instance
		}
		l.mu.Lock()
		l.holds = append(l.holds, h)
		l.mu.Unlock()
		if s != nil {
			l.heldWG.Add(1)
			go l.holder(ctx, h, s)
		}
	}
}

// run opens new connections at the rate until ctx ends; the long-lived
// ones opened by openHeld echo until then too, and are closed cleanly.
func (l *load) run(ctx context.Context) {
	var wg sync.WaitGroup
	every := time.Duration(float64(openers) / l.rate * float64(time.Second))
	for i := range openers {
		wg.Add(1)
		cfg := l.cfg
		if i%2 == 1 {
			cfg = l.full
		}
		go l.opener(ctx, cfg, time.Duration(i)*every/openers, every, &wg)
	}
	wg.Wait()
	l.heldWG.Wait()
}

func (l *load) opener(ctx context.Context, cfg *tls.Config, offset, every time.Duration, wg *sync.WaitGroup) {
	defer wg.Done()
	select {
	case <-ctx.Done():
		return
	case <-time.After(offset):
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 0; ; n++ {
		l.one(cfg, n)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// one is a new connection: it is not cut short when the load stops.
func (l *load) one(cfg *tls.Config, n int) {
	r := connRec{start: time.Now()}
	s, err := l.c.open(context.Background(), cfg)
	if err == nil {
		r.local, r.instance, r.resumed = s.local, s.instance, s.resumed
		switch {
		case !s.clientAddrOK():
			err = fmt.Errorf("backend %d saw client %s, the client is %s", s.instance, s.src, s.local)
		default:
			if e := s.echo(fmt.Sprintf("%s %d", l.label, n), echoWait); e != nil {
				err = &openError{stage: stageEcho, local: s.local, err: e}
			}
		}
		s.close()
	} else if oe := (*openError)(nil); errors.As(err, &oe) {
		r.local = oe.local
	}
	r.err, r.end = err, time.Now()
	l.mu.Lock()
	l.conns = append(l.conns, r)
	l.mu.Unlock()
}

func (l *load) holder(ctx context.Context, h *holdRec, s *session) {
	defer l.heldWG.Done()
	defer s.close()
	tick := time.NewTicker(heldEvery)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := s.echo(fmt.Sprintf("held %d %d", h.id, seq), echoWait)
		l.mu.Lock()
		if err != nil {
			h.err, h.failedAt = err, time.Now()
		} else {
			h.echoes++
		}
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// snapshot copies what the load recorded.
func (l *load) snapshot() ([]connRec, []holdRec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	conns := append([]connRec(nil), l.conns...)
	holds := make([]holdRec, len(l.holds))
	for i, h := range l.holds {
		holds[i] = *h
	}
	return conns, holds
}
