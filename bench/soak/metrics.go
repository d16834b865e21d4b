package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// metrics is one scrape of sluice's /metrics: each metric name's value,
// summed over its label sets, plus the series as written.
type metrics struct {
	sum    map[string]float64
	series map[string]float64
}

// scraper reads sluice's admin endpoint. Keep-alives are off, so that
// between scrapes the soak holds no connection to sluice and every scrape
// costs sluice the same one connection.
type scraper struct {
	base   string
	client *http.Client
}

func newScraper(admin string) *scraper {
	return &scraper{
		base: "http://" + admin,
		client: &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true},
		},
	}
}

func (s *scraper) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return nil, err
	}
	return s.client.Do(req)
}

func (s *scraper) scrape(ctx context.Context) (metrics, error) {
	resp, err := s.get(ctx, "/metrics")
	if err != nil {
		return metrics{}, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return metrics{}, fmt.Errorf("scrape metrics: status %s", resp.Status)
	}
	m := metrics{sum: map[string]float64{}, series: map[string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		name, _, _ := strings.Cut(series, "{")
		m.series[series] = v
		m.sum[name] += v
	}
	if err := sc.Err(); err != nil {
		return metrics{}, fmt.Errorf("read metrics: %w", err)
	}
	return m, nil
}

// ready polls /readyz until it answers 200 or ctx ends.
func (s *scraper) ready(ctx context.Context) error {
	for {
		resp, err := s.get(ctx, "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sluice not ready: %w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *scraper) close() { s.client.CloseIdleConnections() }

// usage is what a process holds that a leak would grow.
type usage struct {
	Goroutines int `json:"goroutines"`
	FDs        int `json:"fds"`
	Pipes      int `json:"pipes_open"` // sluice's pooled splice pipes (2 fds each)
}

func (m metrics) usage() usage {
	return usage{
		Goroutines: int(m.sum["go_goroutines"]),
		FDs:        int(m.sum["process_open_fds"]),
		Pipes:      int(m.sum["sluice_relay_pipes_open"]),
	}
}

// selfUsage is the soak controller's own.
func selfUsage() usage {
	ents, _ := os.ReadDir("/proc/self/fd")
	return usage{Goroutines: runtime.NumGoroutine(), FDs: len(ents)}
}
