package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestScraper(t *testing.T) {
	var hits, fail atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/metrics" || fail.Load() != 0 {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("# TYPE x counter\nx 1\n"))
	}))
	defer srv.Close()

	s, err := startScraper(srv.URL+"/metrics", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(55 * time.Millisecond)
	m, err := s.finish()
	if err != nil {
		t.Fatal(err)
	}
	if m["scrapes"] < 2 || m["scrape_kib"] <= 0 {
		t.Errorf("scrapes %v, KiB %v", m["scrapes"], m["scrape_kib"])
	}
	if int(m["scrapes"])+1 != int(hits.Load()) {
		t.Errorf("%v scrapes counted, %d requests served (one more for the check)", m["scrapes"], hits.Load())
	}

	// A failure during the run fails it.
	s, err = startScraper(srv.URL+"/metrics", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	fail.Store(1)
	time.Sleep(35 * time.Millisecond)
	if _, err := s.finish(); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("finish after failed scrapes: %v", err)
	}

	// An endpoint that does not work fails at the start.
	if _, err := startScraper(srv.URL+"/nothing", 10*time.Millisecond); err == nil {
		t.Error("startScraper on a failing endpoint: no error")
	}

	// A 200 that is not the Prometheus text format fails too: a body the
	// parser refuses, or another Content-Type.
	var body, ctype atomic.Value
	body.Store("# TYPE x counter\nx 1\n")
	ctype.Store("text/plain; version=0.0.4; charset=utf-8")
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype.Load().(string))
		w.Write([]byte(body.Load().(string)))
	}))
	defer srv2.Close()
	s, err = startScraper(srv2.URL, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	body.Store("# TYPE x counter\nx 1\nx{ 2\n")
	time.Sleep(35 * time.Millisecond)
	if _, err := s.finish(); err == nil || !strings.Contains(err.Error(), "does not parse as the Prometheus text format") {
		t.Errorf("finish after unparsable scrapes: %v", err)
	}
	body.Store("# TYPE x counter\nx 1\n")
	ctype.Store("application/json")
	if _, err := startScraper(srv2.URL, 10*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not the Prometheus text format") {
		t.Errorf("startScraper on a JSON endpoint: %v", err)
	}
}
