package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"time"
)

// scrapeInterval is how often sluice+metrics is scraped during a run, and
// also each scrape's timeout, as Prometheus allows no longer one.
const scrapeInterval = time.Second

// scraper GETs a Prometheus endpoint once a second, as a Prometheus server
// would (one kept-alive connection, the whole body read), while a run of a
// peer with the admin listener lasts. It runs in the runner's process, so
// its own CPU time is not the peer's; what serving it costs the peer is.
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
	if _, err := s.scrape(); err != nil {
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
		n, err := s.scrape()
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

// scrape GETs the endpoint and reads the body fully; anything but a 200
// with a body is a failure.
func (s *scraper) scrape() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.every)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return int(n), fmt.Errorf("GET %s: reading the body: %w", s.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return int(n), fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	if n == 0 {
		return 0, fmt.Errorf("GET %s: empty body", s.url)
	}
	return int(n), nil
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
// listener, a scraper GETs its /metrics once a second throughout, and a
// failed scrape fails the run.
func (r *runner) measure(sc *scenario, p *peer) (metrics, error) {
	if !p.admin {
		return sc.run(r, p)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", p.data(r).Admin)
	s, err := startScraper(url, scrapeInterval)
	if err != nil {
		return nil, fmt.Errorf("%s: its admin listener does not serve /metrics: %w", p.name, err)
	}
	m, err := sc.run(r, p)
	sm, serr := s.finish()
	if serr != nil {
		serr = fmt.Errorf("%s: %w", p.name, serr)
	}
	if err != nil || serr != nil {
		return nil, errors.Join(err, serr)
	}
	maps.Copy(m, sm)
	return m, nil
}
