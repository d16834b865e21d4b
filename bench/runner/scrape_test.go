package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// scrapeEvery is the tests' scrape interval, which is also each scrape's
// timeout: long enough that a loaded machine running the suite with -race
// does not time a loopback scrape out.
const scrapeEvery = 250 * time.Millisecond

// answers lets a test wait for its server's responses instead of
// sleeping: each is what the server answered.
type answers chan string

func (a answers) served(what string) {
	select {
	case a <- what:
	default:
	}
}

// wait returns once n more responses have been written.
func (a answers) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		a.next(t)
	}
}

// waitFor returns once the server has answered what.
func (a answers) waitFor(t *testing.T, what string) {
	t.Helper()
	for a.next(t) != what {
	}
}

func (a answers) next(t *testing.T) string {
	t.Helper()
	select {
	case what := <-a:
		return what
	case <-time.After(10 * time.Second):
		t.Fatalf("waited 10 s for a scrape")
		return ""
	}
}

func TestScraper(t *testing.T) {
	var hits, fail atomic.Int32
	answered := make(answers, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/metrics" || fail.Load() != 0 {
			http.Error(w, "no", http.StatusInternalServerError)
			answered.served("500")
			return
		}
		w.Write([]byte("# TYPE x counter\nx 1\n"))
		answered.served("ok")
	}))
	defer srv.Close()

	s, err := startScraper(srv.URL+"/metrics", scrapeEvery)
	if err != nil {
		t.Fatal(err)
	}
	answered.wait(t, 3) // the check, then two scrapes
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
	s, err = startScraper(srv.URL+"/metrics", scrapeEvery)
	if err != nil {
		t.Fatal(err)
	}
	fail.Store(1)
	answered.waitFor(t, "500")
	if _, err := s.finish(); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("finish after failed scrapes: %v", err)
	}

	// An endpoint that does not work fails at the start.
	if _, err := startScraper(srv.URL+"/nothing", scrapeEvery); err == nil {
		t.Error("startScraper on a failing endpoint: no error")
	}

	// A 200 that is not the Prometheus text format fails too: a body the
	// parser refuses, or another Content-Type.
	var body, ctype atomic.Value
	body.Store("# TYPE x counter\nx 1\n")
	ctype.Store("text/plain; version=0.0.4; charset=utf-8")
	answered2 := make(answers, 64)
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype.Load().(string))
		b := body.Load().(string)
		w.Write([]byte(b))
		answered2.served(b)
	}))
	defer srv2.Close()
	s, err = startScraper(srv2.URL, scrapeEvery)
	if err != nil {
		t.Fatal(err)
	}
	bad := "# TYPE x counter\nx 1\nx{ 2\n"
	body.Store(bad)
	answered2.waitFor(t, bad)
	if _, err := s.finish(); err == nil || !strings.Contains(err.Error(), "does not parse as the Prometheus text format") {
		t.Errorf("finish after unparsable scrapes: %v", err)
	}
	body.Store("# TYPE x counter\nx 1\n")
	ctype.Store("application/json")
	if _, err := startScraper(srv2.URL, scrapeEvery); err == nil || !strings.Contains(err.Error(), "not the Prometheus text format") {
		t.Errorf("startScraper on a JSON endpoint: %v", err)
	}
}
