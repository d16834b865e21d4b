package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// checkClientAddr opens connections one after another through HAProxy:
// each backend must see, in sluice's PROXY header, the client's own
// address and port (carried from HAProxy's header through sluice), and
// each instance must serve some.
func (f *fleet) checkClientAddr(ctx context.Context) result {
	r := result{n: 1, name: "client address through both hops"}
	cfg := f.client.tlsConfig(0, nil)
	var ok int
	var per [4]int
	var dst string
	for range f.opts.addrConns {
		start := time.Now()
		s, err := f.client.open(ctx, cfg)
		if err != nil {
			r.fail("connection failed: %v", err)
			continue
		}
		s.close()
		per[s.instance]++
		dst = s.dst
		switch {
		case !s.clientAddrOK():
			r.fail("backend %d saw client=%s, the client is %s", s.instance, s.src, s.local)
		case !slices.Contains(f.seen.seenSince(s.local, start), s.instance):
			r.fail("backend %d did not record client %s", s.instance, s.local)
		default:
			ok++
		}
	}
	for n := 1; n <= 3; n++ {
		if per[n] == 0 {
			r.fail("instance %d served none of the connections", n)
		}
	}
	r.summary = fmt.Sprintf("%d/%d connections with the client's own address and port (%s:<its port>) at the backend (PROXY dst %s); per instance %d/%d/%d",
		ok, f.opts.addrConns, clientIP, dst, per[1], per[2], per[3])
	r.key = fmt.Sprintf("%d/%d client addresses right at the backend", ok, f.opts.addrConns)
	f.addBadHeaders(&r)
	r.pass = len(r.details) == 0
	return r
}

// addBadHeaders fails r for each backend connection that came without a
// usable PROXY header since the last call.
func (f *fleet) addBadHeaders(r *result) {
	f.seen.mu.Lock()
	bad := f.seen.bad
	f.seen.bad = nil
	f.seen.mu.Unlock()
	for _, b := range bad {
		r.fail("%s", b)
	}
}

// startLoad opens the long-lived connections of a load named name and
// starts its new connections; end stops them and waits until the load is
// done (again: a no-op). logFrom is where HAProxy's log stood.
func (f *fleet) startLoad(ctx context.Context, name string) (l *load, logFrom int64, start time.Time, end func()) {
	l = newLoad(f.client, f.opts.rate, f.opts.held, name)
	lctx, stop := context.WithCancel(ctx)
	logFrom = f.lb.logSize()
	start = time.Now()
	l.openHeld(lctx)
	ran := make(chan struct{})
	go func() { l.run(lctx); close(ran) }()
	return l, logFrom, start, func() {
		stop()
		<-ran
	}
}

// event is a signal the fleet sent under load.
type event struct {
	what     string
	instance int
	at, done time.Time
}

// checkRolling reloads and then upgrades each instance in turn, under
// load: no new connection may fail, no long-lived one may miss an echo,
// and every replaced process must exit 0 once its connections are gone.
func (f *fleet) checkRolling(ctx context.Context) result {
	r := result{n: 3, name: "rolling reload + upgrade under load"}
	l, logFrom, start, end := f.startLoad(ctx, "roll")
	defer end()

	gap := (f.opts.duration - 2*time.Second) / 6
	var events []event
	var ups []upgrade
	sleepCtx(ctx, time.Second)
	for _, in := range f.insts {
		ev := event{what: "reload", instance: in.n, at: time.Now()}
		if _, err := in.reload(); err != nil {
			r.fail("%v", err)
		} else {
			ev.done = time.Now()
			events = append(events, ev)
		}
		sleepCtx(ctx, gap)
		ev = event{what: "upgrade", instance: in.n, at: time.Now()}
		u, err := in.upgrade()
		ev.done = time.Now()
		events = append(events, ev)
		if err != nil {
			r.fail("%v", err)
		} else {
			ups = append(ups, u)
		}
		sleepCtx(ctx, gap)
	}
	sleepCtx(ctx, time.Until(start.Add(f.opts.duration)))
	end()
	// The replaced processes drained what stayed with them (TLS run by
	// crypto/tls); with the long-lived connections closed, they exit.
	for _, in := range f.insts {
		for _, p := range in.awaitOlds(10 * time.Second) {
			r.fail("%s", p)
		}
	}

	conns, holds := l.snapshot()
	st := connStats(conns)
	for _, c := range conns {
		if c.err != nil {
			r.fail("connection at +%v: %v", c.start.Sub(start).Round(time.Millisecond), c.err)
		}
	}
	// How much of the load met the signals: connections open while one
	// was acted on, or within a second after.
	near := 0
	for _, c := range conns {
		if slices.ContainsFunc(events, func(ev event) bool { return c.start.Before(ev.done.Add(time.Second)) && c.end.After(ev.at) }) {
			near++
		}
	}
	rt := f.lb.logRetries(logFrom)
	var heldPer [4]int
	echoes := 0
	for _, h := range holds {
		heldPer[h.instance]++
		echoes += h.echoes
		if h.err != nil {
			r.fail("long-lived connection %d on instance %d (from %s): failed at +%v after %d echoes: %v",
				h.id, h.instance, h.local, h.failedAt.Sub(start).Round(time.Millisecond), h.echoes, h.err)
		}
	}
	for n := 1; n <= 3; n++ {
		if st.per[n] == 0 {
			r.fail("instance %d served no new connection", n)
		}
	}
	if len(ups) != 3 {
		r.fail("%d of 3 upgrades completed", len(ups))
	}
	f.addBadHeaders(&r)
	var upText []string
	for _, u := range ups {
		upText = append(upText, fmt.Sprintf("s%d %d→%d ready in %v, %d moved, %d stayed to drain", u.instance, u.oldPID, u.newPID, u.ready.Round(time.Millisecond), u.moved, u.staying))
	}
	r.summary = fmt.Sprintf("%d new connections, %d failed (per instance %d/%d/%d, %d resumed, %d open within 1s of a signal, HAProxy retried %d); %d long-lived (%d/%d/%d), %d echoes, %d failed; %d reloads, upgrades: %s",
		st.total, st.failed, st.per[1], st.per[2], st.per[3], st.resumed, near, rt.retried,
		len(holds), heldPer[1], heldPer[2], heldPer[3], echoes, countFailed(holds), countEvents(events, "reload"), strings.Join(upText, ", "))
	r.key = fmt.Sprintf("failed: %d/%d new connections, %d/%d long-lived; %d reloads, %d upgrades",
		st.failed, st.total, countFailed(holds), len(holds), countEvents(events, "reload"), len(ups))
	r.pass = len(r.details) == 0
	return r
}

// checkKill SIGKILLs instance 2's serving process under load: only its
// own long-lived connections may end, and no connection opened after it
// died may fail (HAProxy retries on another server and its health check
// takes s2 out). A new connection in flight to s2 when it died is s2's
// own; one that failed while a surviving backend saw it is not.
func (f *fleet) checkKill(ctx context.Context) result {
	r := result{n: 4, name: "one instance killed outright"}
	victim := f.insts[1]
	l, logFrom, start, end := f.startLoad(ctx, "kill")
	defer end()

	sleepCtx(ctx, f.opts.killDuration/4)
	pid := victim.cur.Pid
	killAt := time.Now()
	if err := victim.cur.Kill(); err != nil {
		r.fail("SIGKILL sluice %d: %v", victim.n, err)
	}
	dead := time.Now()
	downAfter := time.Duration(-1)
	for time.Since(start) < f.opts.killDuration && ctx.Err() == nil {
		if downAfter < 0 {
			if st, err := f.lb.states(); err == nil && strings.HasPrefix(st[victim.n], "DOWN") {
				downAfter = time.Since(killAt)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	end()

	conns, holds := l.snapshot()
	var after, inFlight connSummary
	var perAfter [4]int
	for _, c := range conns {
		if c.start.After(dead) {
			after.add(c)
			perAfter[c.instance]++
			if c.err != nil {
				r.fail("new connection at +%v, %v after s%d died: %v", c.start.Sub(start).Round(time.Millisecond), c.start.Sub(dead).Round(time.Millisecond), victim.n, c.err)
			}
			continue
		}
		if !c.end.After(killAt) {
			if c.err != nil {
				r.fail("new connection at +%v, before the kill, failed: %v", c.start.Sub(start).Round(time.Millisecond), c.err)
			}
			continue
		}
		inFlight.add(c)
		if c.err == nil {
			continue
		}
		// In flight at the kill: s2's own, unless it had its greeting
		// from another instance or a surviving backend saw it while it
		// lasted.
		saw := f.seen.seenBetween(c.local, c.start, c.end)
		if c.instance != 0 && c.instance != victim.n || slices.ContainsFunc(saw, func(n int) bool { return n != victim.n }) {
			r.fail("connection in flight at the kill, on a surviving instance (greeting from %d, backends %v), failed: %v", c.instance, saw, c.err)
		}
	}
	var victimHeld, victimEnded, otherHeld int
	for _, h := range holds {
		switch {
		case h.instance == 0:
			r.fail("long-lived connection %d did not open: %v", h.id, h.err)
		case h.instance == victim.n:
			victimHeld++
			if h.err != nil && !h.failedAt.Before(killAt) {
				victimEnded++
			} else {
				r.fail("long-lived connection %d on the killed instance: %v", h.id, orNone(h.err, "still echoing after the kill"))
			}
		default:
			otherHeld++
			if h.err != nil {
				r.fail("long-lived connection %d on surviving instance %d failed at +%v: %v", h.id, h.instance, h.failedAt.Sub(start).Round(time.Millisecond), h.err)
			}
		}
	}
	if victimHeld == 0 {
		r.fail("no long-lived connection was on instance %d: the kill proved nothing", victim.n)
	}
	if after.total == 0 || perAfter[1] == 0 || perAfter[3] == 0 {
		r.fail("new connections after the kill by instance: %d/%d/%d, want some on s1 and s3", perAfter[1], perAfter[2], perAfter[3])
	}
	if after.failed > 0 {
		r.fail("why: HAProxy sends a new client to s%d until its health check marks it DOWN (inter × fall); a connect refused there is retried up to `retries` times, on the same server unless `option redispatch` sends the retry to another", victim.n)
	}
	if downAfter < 0 {
		r.fail("HAProxy did not mark s%d DOWN within %v", victim.n, f.opts.killDuration-time.Since(killAt))
	}
	f.addBadHeaders(&r)
	rt := f.lb.logRetries(logFrom)
	r.summary = fmt.Sprintf("SIGKILL s%d (pid %d) at +%v; long-lived on s%d ended %d/%d, on the others %d, failed %d; new connections after the kill %d, failed %d (per instance %d/%d/%d), HAProxy redispatched %d; in flight at the kill %d, failed %d; HAProxy marked s%d DOWN after %v",
		victim.n, pid, killAt.Sub(start).Round(time.Millisecond), victim.n, victimEnded, victimHeld, otherHeld, countFailedOthers(holds, victim.n),
		after.total, after.failed, perAfter[1], perAfter[2], perAfter[3], rt.redispatched, inFlight.total, inFlight.failed, victim.n, downAfter.Round(time.Millisecond))
	r.key = fmt.Sprintf("failed after the kill: %d/%d new connections, %d/%d long-lived elsewhere; s%d's own ended %d/%d",
		after.failed, after.total, countFailedOthers(holds, victim.n), otherHeld, victim.n, victimEnded, victimHeld)
	r.pass = len(r.details) == 0
	return r
}

// connSummary counts connections.
type connSummary struct {
	total, failed, resumed int
	per                    [4]int
}

func (s *connSummary) add(c connRec) {
	s.total++
	s.per[c.instance]++
	if c.err != nil {
		s.failed++
	}
	if c.resumed {
		s.resumed++
	}
}

func connStats(conns []connRec) connSummary {
	var s connSummary
	for _, c := range conns {
		s.add(c)
	}
	return s
}

func countEvents(events []event, what string) int {
	n := 0
	for _, ev := range events {
		if ev.what == what {
			n++
		}
	}
	return n
}

func countFailed(holds []holdRec) int {
	n := 0
	for _, h := range holds {
		if h.err != nil {
			n++
		}
	}
	return n
}

func countFailedOthers(holds []holdRec, victim int) int {
	n := 0
	for _, h := range holds {
		if h.err != nil && h.instance != victim {
			n++
		}
	}
	return n
}

func orNone(err error, none string) string {
	if err == nil {
		return none
	}
	return err.Error()
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
