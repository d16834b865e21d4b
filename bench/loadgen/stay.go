package main

import (
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// calmWindow is the window stay mode counts round trips in until stdin
// names another.
const calmWindow = "calm"

// echoSummary is the JSON of the round trips of one window.
type echoSummary struct {
	Messages int64   `json:"messages"`      // echoes received intact
	Errors   int64   `json:"errors"`        // failed or mismatched echoes
	Dropped  int64   `json:"dropped_conns"` // connections lost
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	// Timeline is the window's round trips by when they were sent, in
	// quarter seconds from its start (not for calm, which comes back).
	Timeline []slotSummary `json:"timeline,omitempty"`
}

func summarize(st *echoStats) echoSummary {
	ms := func(d time.Duration) float64 { return round3(d.Seconds() * 1000) }
	var tl []slotSummary
	if st.tl != nil {
		tl = st.tl.summary()
	}
	return echoSummary{
		Timeline: tl,
		Messages: st.messages.Load(),
		Errors:   st.errors.Load(),
		Dropped:  st.dropped.Load(),
		P50:      ms(st.rtt.quantile(0.50)),
		P99:      ms(st.rtt.quantile(0.99)),
		Max:      ms(st.rtt.maximum()),
	}
}

// stayReport is the JSON of the RESULT line of stay mode.
type stayReport struct {
	Conns   int                    `json:"conns"` // open after the dials
	Windows map[string]echoSummary `json:"windows"`
	Seconds float64                `json:"seconds"` // from GO to stdin's EOF
}

// windowMark is the JSON of the WINDOW line, stay mode's answer to a
// WINDOW command: every message sent from then on counts in it.
type windowMark struct {
	Name string `json:"name"`
}

// windows are stay mode's round-trip counts, by window name.
type windows struct {
	mu     sync.Mutex
	byName map[string]*echoStats
	cur    atomic.Pointer[echoStats]
}

func newWindows() *windows {
	w := &windows{byName: map[string]*echoStats{}}
	w.use(calmWindow)
	return w
}

// use makes name, new or not, the window round trips count in from now.
func (w *windows) use(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, ok := w.byName[name]
	if !ok {
		st = new(echoStats)
		if name != calmWindow {
			st.tl = &timeline{start: time.Now()}
		}
		w.byName[name] = st
	}
	w.cur.Store(st)
}

func (w *windows) summaries() map[string]echoSummary {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]echoSummary, len(w.byName))
	for name, st := range w.byName {
		out[name] = summarize(st)
	}
	return out
}

// runStay is stay mode, the connections that stay through S7's storms: it
// opens cfg.conns WebSocket connections to cfg.url, prints READY, waits
// for a line ("GO") or EOF on stdin, then each connection echoes a
// cfg.size byte message cfg.rate times a second (the first sends spread
// over the first period) until stdin's EOF or cfg.timeout. Each round trip
// counts in the window current when it was sent: "calm" at first, then
// the one the last "WINDOW name" line on stdin named, each such line
// answered with a WINDOW line on stdout once it applies. It prints RESULT
// with every window's round trips and closes every connection with status
// 1000. It returns an error only for an invalid URL or if it cannot write
// to stdout.
func runStay(ctx context.Context, cfg config, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	u, err := wsTarget(cfg.url)
	if err != nil {
		return err
	}
	d := newDialer(cfg, u.Hostname(), []string{"http/1.1"})

	open, ready := openWSAll(ctx, cfg, d, stderr)
	closeAll := func() { closeWSAll(ctx, open, cfg.dialers) }
	if err := writeTagged(stdout, "READY", ready); err != nil {
		closeAll()
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	lines := lineEvents(stdin, stop)
	// No progress line from here on: the storm's loadgen draws its own on
	// the same terminal meanwhile.
	select {
	case <-lines:
	case <-ctx.Done():
	}

	start := time.Now()
	w := newWindows()
	phase, endPhase := context.WithCancel(ctx)
	defer endPhase()
	var wg sync.WaitGroup
	period := time.Duration(float64(time.Second) / cfg.rate)
	for j, c := range open {
		first := start.Add(time.Duration(int64(period) * int64(j) / int64(len(open))))
		wg.Go(func() { echoLoop(phase, ctx, c, first, period, cfg.size, w.cur.Load) })
	}
	var werr error
	func() {
		// Until EOF (the lines end) or the timeout.
		for {
			select {
			case <-ctx.Done():
				return
			case line, ok := <-lines:
				if !ok {
					return
				}
				name, isWindow := strings.CutPrefix(line, "WINDOW ")
				if !isWindow || name == "" {
					continue
				}
				w.use(name)
				if werr = writeTagged(stdout, "WINDOW", windowMark{Name: name}); werr != nil {
					return
				}
			}
		}
	}()
	endPhase()
	wg.Wait()
	elapsed := time.Since(start)
	if werr != nil {
		closeAll()
		return werr
	}
	err = writeTagged(stdout, "RESULT", stayReport{
		Conns:   len(open),
		Windows: w.summaries(),
		Seconds: round3(elapsed.Seconds()),
	})
	closeAll()
	return err
}
