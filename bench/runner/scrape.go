package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
)

// scrapeInterval is how often sluice+metrics is scraped during a run, and
// also each scrape's timeout, as Prometheus allows no longer one.
const scrapeInterval = time.Second

// scraper GETs a Prometheus endpoint once a second, as a Prometheus server
// would (one kept-alive connection, the whole body read and parsed with
// Prometheus' text parser), while a run of a peer with the admin listener
// lasts. It runs in the runner's process, so its own CPU time is not the
// peer's; what serving it costs the peer is.
type scraper struct {
	url    string
	every  time.Duration // interval, and each scrape's timeout
	client *http.Client
	stop   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	scrapes  int // completed, not counting the first one (the check before the run)
	failures int
	firstErr error
	bytes    int           // body size of the last scrape
	slowest  time.Duration // longest scrape
}

// startScraper scrapes url once, synchronously, so that a variant whose
// endpoint does not work fails before the run, then every interval until
// finish.
func startScraper(url string, every time.Duration) (*scraper, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	s := &scraper{
		url:    url,
		every:  every,
		client: &http.Client{Transport: tr, Timeout: every},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if _, _, err := s.scrape(); err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	go s.loop()
	return s, nil
}

func (s *scraper) loop() {
	defer close(s.done)
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		start := time.Now()
		_, n, err := s.scrape()
		d := time.Since(start)
		s.mu.Lock()
		s.scrapes++
		if err != nil {
			s.failures++
			if s.firstErr == nil {
				s.firstErr = err
			}
		} else {
			s.bytes = n
		}
		s.slowest = max(s.slowest, d)
		s.mu.Unlock()
	}
}

// scrape GETs the endpoint, reads the body fully and parses it as a
// Prometheus server would: anything but a 200 with a body in the
// Prometheus text format (Content-Type text/plain; version=0.0.4, parsed
// by expfmt's text parser) is a failure. n is the body's size.
func (s *scraper) scrape() (e exposition, n int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.every)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, len(body), fmt.Errorf("GET %s: reading the body: %w", s.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, len(body), fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	if len(body) == 0 {
		return nil, 0, fmt.Errorf("GET %s: empty body", s.url)
	}
	if f := expfmt.ResponseFormat(resp.Header); f.FormatType() != expfmt.TypeTextPlain {
		return nil, len(body), fmt.Errorf("GET %s: Content-Type %q is not the Prometheus text format", s.url, resp.Header.Get("Content-Type"))
	}
	e, err = parseExposition(bytes.NewReader(body))
	if err != nil {
		return nil, len(body), fmt.Errorf("GET %s: the body does not parse as the Prometheus text format: %w", s.url, err)
	}
	return e, len(body), nil
}

// finish stops scraping (waiting for a scrape under way) and returns an
// error if any scrape failed: the peer was then not what it claims to be.
func (s *scraper) finish() (metrics, error) {
	close(s.stop)
	<-s.done
	s.client.CloseIdleConnections()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		return nil, fmt.Errorf("%d of %d scrapes of %s failed; the first: %w", s.failures, s.scrapes, s.url, s.firstErr)
	}
	return metrics{
		"scrapes":       float64(s.scrapes),
		"scrape_kib":    float64(s.bytes) / 1024,
		"scrape_ms_max": float64(s.slowest) / float64(time.Millisecond),
	}, nil
}

// measure runs scenario sc against p once. For a peer with the admin
// listener, a scraper GETs and parses its /metrics once a second
// throughout, and a failed scrape fails the run. If the scenario has a
// checkListener, that listener's counters are read once it is quiet right
// before the run and again once wrk's connections have closed after it,
// and compared with what wrk reports (metricscheck.go): a mismatch fails
// the run.
func (r *runner) measure(sc *scenario, p *peer) (metrics, error) {
	if !p.admin {
		return sc.run(r, p)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", p.data(r).Admin)
	s, err := startScraper(url, scrapeInterval)
	if err != nil {
		return nil, fmt.Errorf("%s: its admin listener does not serve /metrics: %w", p.name, err)
	}
	var before listenerCounts
	if sc.checkListener != "" {
		if before, err = s.quiet(sc.checkListener, quietPoll, quietWithin); err != nil {
			s.finish()
			return nil, fmt.Errorf("%s: before the run: %w", p.name, err)
		}
	}
	m, err := sc.run(r, p)
	var cerr error
	if err == nil && sc.checkListener != "" {
		if cerr = r.checkAgainstWrk(s, sc.checkListener, before, m); cerr != nil {
			cerr = fmt.Errorf("%s: %w", p.name, cerr)
		}
	}
	sm, serr := s.finish()
	if serr != nil {
		serr = fmt.Errorf("%s: %w", p.name, serr)
	}
	if err != nil || cerr != nil || serr != nil {
		return nil, errors.Join(err, cerr, serr)
	}
	maps.Copy(m, sm)
	return m, nil
}
