package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
)

// resumeRound is one client's sessions: a first connection whose ticket
// is pinned, then reconnects, by instance.
type resumeRound struct {
	version  uint16
	issuer   int    // the instance that issued the pinned ticket
	conns    [4]int // reconnects by instance
	resumed  [4]int // of which resumed
	problems []string
}

const reconnects = 6 // round robin: two on each instance

func (f *fleet) resumeRound(ctx context.Context, version uint16) resumeRound {
	rr := resumeRound{version: version}
	cache := &pinnedCache{}
	cfg := f.client.tlsConfig(version, cache)
	s, err := f.client.open(ctx, cfg)
	if err != nil {
		rr.problems = append(rr.problems, fmt.Sprintf("%s first connection: %v", versionName(version), err))
		return rr
	}
	s.close()
	rr.issuer = s.instance
	if !cache.has() {
		rr.problems = append(rr.problems, fmt.Sprintf("%s: instance %d issued no session ticket", versionName(version), s.instance))
		return rr
	}
	for range reconnects {
		s, err := f.client.open(ctx, cfg)
		if err != nil {
			rr.problems = append(rr.problems, fmt.Sprintf("%s reconnect: %v", versionName(version), err))
			continue
		}
		s.close()
		rr.conns[s.instance]++
		if s.resumed {
			rr.resumed[s.instance]++
		}
	}
	return rr
}

// judge says what is wrong with the round if every instance should
// resume the issuer's ticket (shared keys), or only the issuer itself.
func (rr resumeRound) judge(shared bool) []string {
	bad := append([]string(nil), rr.problems...)
	if rr.issuer == 0 {
		return bad
	}
	v := versionName(rr.version)
	for n := 1; n <= 3; n++ {
		switch {
		case rr.conns[n] == 0:
			bad = append(bad, fmt.Sprintf("%s: no reconnect landed on instance %d", v, n))
		case n == rr.issuer && rr.resumed[n] != rr.conns[n]:
			bad = append(bad, fmt.Sprintf("%s: instance %d resumed %d of %d of its own sessions", v, n, rr.resumed[n], rr.conns[n]))
		case n != rr.issuer && shared && rr.resumed[n] != rr.conns[n]:
			bad = append(bad, fmt.Sprintf("%s: instance %d resumed %d of %d sessions instance %d issued, with one key file for all", v, n, rr.resumed[n], rr.conns[n], rr.issuer))
		case n != rr.issuer && !shared && rr.resumed[n] != 0:
			bad = append(bad, fmt.Sprintf("%s: instance %d resumed %d of %d sessions instance %d issued, with a key file each (the control)", v, n, rr.resumed[n], rr.conns[n], rr.issuer))
		}
	}
	return bad
}

// elsewhere counts the reconnects to instances other than the issuer,
// and how many of them resumed.
func (rr resumeRound) elsewhere() (resumed, of int) {
	for n := 1; n <= 3; n++ {
		if n != rr.issuer {
			resumed += rr.resumed[n]
			of += rr.conns[n]
		}
	}
	return resumed, of
}

func (rr resumeRound) String() string {
	if rr.issuer == 0 {
		return versionName(rr.version) + " -"
	}
	n, of := rr.elsewhere()
	return fmt.Sprintf("%s ticket from s%d: resumed on the others %d/%d, on s%d %d/%d",
		versionName(rr.version), rr.issuer, n, of, rr.issuer, rr.resumed[rr.issuer], rr.conns[rr.issuer])
}

func versionName(v uint16) string {
	if v == tls.VersionTLS12 {
		return "TLS 1.2"
	}
	return "TLS 1.3"
}

// checkResumption: with one ticket key file for the three instances, a
// session one issued resumes on the others, in TLS 1.3 and 1.2. The
// control: with a file each (set by a reload), it resumes only on the
// one that issued it. Then the shared file is put back.
func (f *fleet) checkResumption(ctx context.Context) result {
	r := result{n: 2, name: "session resumption across instances"}
	if f.ticketsErr != nil {
		r.fail("this sluice cannot share ticket keys (session_ticket_keys): %v", f.ticketsErr)
		r.summary = "not run"
		return r
	}
	// rounds resumes a TLS 1.3 and a TLS 1.2 session, each across the
	// instances, and judges them by whether the instances share keys.
	rounds := func(sharing bool) (text []string, across, of int) {
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			rr := f.resumeRound(ctx, v)
			text = append(text, rr.String())
			n, m := rr.elsewhere()
			across, of = across+n, of+m
			for _, d := range rr.judge(sharing) {
				r.fail("%s", d)
			}
		}
		return text, across, of
	}
	shared, across, acrossN := rounds(true)
	// The negative control, which shows the check can fail: each
	// instance with a key of its own.
	var control []string
	var ctlAcross, ctlAcrossN int
	if err := f.setTicketKeys(func(in *instance) string { return f.ownKeys[in.n-1] }); err != nil {
		r.fail("%v", err)
	} else {
		control, ctlAcross, ctlAcrossN = rounds(false)
	}
	keys := func(in *instance) string { return f.sharedKeys }
	if f.opts.breakWhat == "tickets" {
		keys = func(in *instance) string { return f.ownKeys[in.n-1] }
	}
	if err := f.setTicketKeys(keys); err != nil {
		r.fail("%v", err)
	}
	r.summary = fmt.Sprintf("one key file: %s; control, a key file each: %s", strings.Join(shared, "; "), strings.Join(control, "; "))
	r.key = fmt.Sprintf("resumed on another instance %d/%d (TLS 1.3 and 1.2); control %d/%d", across, acrossN, ctlAcross, ctlAcrossN)
	r.pass = len(r.details) == 0
	return r
}

// setTicketKeys points each instance's session_ticket_keys at a file
// and reloads it.
func (f *fleet) setTicketKeys(path func(*instance) string) error {
	for _, in := range f.insts {
		in.ticketKeys = path(in)
		if _, err := in.reload(); err != nil {
			return err
		}
	}
	return nil
}
