package main

import (
	"bufio"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
)

// The Go peers run with GODEBUG=gctrace=1: each collection writes one line
// to their log (a write of some 150 bytes, tens of them a second at most),
// and the probe reads the lines a run added. GC is the one part of a Go
// peer's CPU that /proc cannot show, and the one that can fill idle time
// by itself: the runtime's idle mark workers take any processor that has
// nothing else to do while a collection is under way.

// goEnv is the environment of the Go peers.
var goEnv = []string{"GOMAXPROCS=1", "GODEBUG=gctrace=1"}

// gcTraced reports whether the peer's runtime writes a line per GC.
func (p *peer) gcTraced() bool { return slices.Contains(p.env, "GODEBUG=gctrace=1") }

// gcLine matches gctrace's line up to the heap sizes: "gc 12 @3.401s 2%:
// 0.011+1.2+0.004 ms clock, 0.011+0.3/0.9/0.1+0.004 ms cpu, 4->4->1 MB".
// The CPU fields are the two stop-the-world phases around assist,
// background and idle marking; the sizes the heap at the start, at the end
// and the live heap marked.
var gcLine = regexp.MustCompile(`gc \d+ @[\d.]+s \d+%: [\d.+]+ ms clock, ([\d.]+)\+([\d.]+)/([\d.]+)/([\d.]+)\+([\d.]+) ms cpu, [\d.]+->[\d.]+->([\d.]+) MB`)

// gcStats adds up the collections in a stretch of gctrace output.
type gcStats struct {
	cycles int
	cpuMS  float64 // all of their CPU
	idleMS float64 // of which idle marking
	liveMB float64 // the largest live heap marked
}

func parseGCTrace(r io.Reader) gcStats {
	var s gcStats
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := gcLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		s.cycles++
		for i := 1; i <= 5; i++ {
			v, _ := strconv.ParseFloat(m[i], 64)
			s.cpuMS += v
			if i == 4 {
				s.idleMS += v
			}
		}
		live, _ := strconv.ParseFloat(m[6], 64)
		s.liveMB = max(s.liveMB, live)
	}
	return s
}

// logSizes are the sizes of the peer's logs, where a run's lines start.
func (p *peer) logSizes() []int64 {
	sizes := make([]int64, len(p.procs))
	for i, pr := range p.procs {
		if pr.log == nil {
			continue
		}
		if fi, err := os.Stat(pr.log.Name()); err == nil {
			sizes[i] = fi.Size()
		}
	}
	return sizes
}

// gcSince adds up the collections the peer's logs recorded past sizes.
func (p *peer) gcSince(sizes []int64) gcStats {
	var all gcStats
	for i, pr := range p.procs {
		if i >= len(sizes) {
			break
		}
		if pr.log == nil {
			continue
		}
		f, err := os.Open(pr.log.Name())
		if err != nil {
			continue
		}
		s := parseGCTrace(io.NewSectionReader(f, sizes[i], 1<<40))
		f.Close()
		all.cycles += s.cycles
		all.cpuMS += s.cpuMS
		all.idleMS += s.idleMS
		all.liveMB = max(all.liveMB, s.liveMB)
	}
	return all
}
