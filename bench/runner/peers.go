package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"time"
)

// ports and files shared by every peer's configuration template.
type tmplData struct {
	Dir, Cert, Key, PEM                string
	NoFile, WorkerConns, MaxConn       int
	BackendHTTP, BackendTLS, BackendWS int
	TLS, WS, Plain, Pass               int // the peer's listeners
	Admin                              int // sluice's [admin] listener (sluice+metrics); 0 for none
	// TLSR and WSR are TLS and WS again with session tickets on (S3r,
	// S7); TLS and WS have them off where the peer has the switch.
	TLSR, WSR int
	Body64    string
	User      string // for hitch, which will not run workers as root
	// Frontend and Backend are the one listener a hitch instance serves
	// and its backend (peer.instances).
	Frontend, Backend int
}

// peer is one terminator under test.
type peer struct {
	name string
	base int // first of its ports: TLS, WS, Plain, Pass, Admin (base+4, if admin), TLSR, WSR
	// confs are the templates in bench/peers rendered for it; argv builds
	// the commands that start it from the rendered paths.
	confs []string
	argv  func(r *runner, rendered []string) [][]string
	// instances, if set, renders confs[0] once for each of the data it
	// returns, ahead of the other confs: hitch serves one backend per
	// process, and tickets on or off for the whole process.
	instances func(d tmplData) []tmplData
	env       []string
	// plain reports whether it has plain TCP listeners (S6).
	plain bool
	// variantOf names the peer this one is a variant of: the report shows
	// it beside that peer and its ratio to it, not as a peer to compare
	// sluice with.
	variantOf string
	// admin: the configuration gets sluice's [admin] listener on base+4,
	// and the runner scrapes its /metrics once a second during each run
	// (scrape.go).
	admin bool
	// only, if set, limits the peer to these scenario ids.
	only []string

	procs []*proc
}

// metricsPeer is sluice with the Prometheus admin listener on and scraped:
// it shows what metrics cost on the data path, against plain sluice in the
// same run.
const metricsPeer = "sluice+metrics"

// barePeer is bench/tlsbare: crypto/tls with sluice's TLS settings and no
// backend, answering from memory. Beside sluice it shows what sluice's
// handshakes and requests could cost at best in Go, and so how much of a
// gap to a peer is crypto/tls's and how much sluice's.
const barePeer = "tlsbare"

// proxyPeer is bench/tlsbare -backend: the least a TLS proxy can be in Go
// (a goroutine and an io.Copy per direction, both closed when either
// ends). Beside sluice it shows what the backend leg costs in Go and the
// kernel, and so how much of sluice's gap to tlsbare is its relay's.
const proxyPeer = "tlsproxy"

// bareScenarios are those tlsbare can serve: HTTP over TLS.
var bareScenarios = []string{"S1", "S3", "S3r"}

// proxyScenarios are those tlsproxy takes part in: bareScenarios, the
// idle and echoing connections, where sluice's parking trades CPU for
// memory and tlsproxy, whose goroutines and buffers wait in every
// connection, shows the other side of the trade, and the reconnect storm.
var proxyScenarios = []string{"S1", "S3", "S3r", "S4", "S5", "S5s", "S7"}

// bareArgv runs bench/tlsbare on the peer ports from base: TLS and
// WebSocket without session tickets, and with them.
func bareArgv(r *runner, bin string, base int, extra ...string) [][]string {
	addr := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	argv := []string{bin, "-listen", addr(base) + "," + addr(base+1),
		"-listen-resume", addr(base+5) + "," + addr(base+6), "-cert", r.base.Cert, "-key", r.base.Key}
	return [][]string{append(argv, extra...)}
}

// peers are the terminators; metricsOnly are the scenarios sluice+metrics
// takes part in.
func peers(sluiceBin, bareBin string, metricsOnly []string) []*peer {
	return []*peer{
		{
			name: "sluice", base: 24000, confs: []string{"sluice.toml"}, plain: true,
			env: goEnv,
			argv: func(r *runner, c []string) [][]string {
				return [][]string{{sluiceBin, "-config", c[0]}}
			},
		},
		{
			// sluice.toml rendered with Admin set: the same configuration
			// plus [admin].
			name: metricsPeer, base: 25000, confs: []string{"sluice.toml"}, plain: true,
			variantOf: "sluice", admin: true, only: metricsOnly,
			env: goEnv,
			argv: func(r *runner, c []string) [][]string {
				return [][]string{{sluiceBin, "-config", c[0]}}
			},
		},
		{
			// Ports as every peer's (tmplData): it serves the same answer
			// on all four TLS ones, tickets on the tlsr and wsr ones.
			name: barePeer, base: 26000, variantOf: "sluice", only: bareScenarios,
			env:  goEnv,
			argv: func(r *runner, _ []string) [][]string { return bareArgv(r, bareBin, 26000) },
		},
		{
			// The same ports, proxied to the HTTP and the WebSocket
			// backends.
			name: proxyPeer, base: 27000, variantOf: "sluice", only: proxyScenarios,
			env: goEnv,
			argv: func(r *runner, _ []string) [][]string {
				return bareArgv(r, bareBin, 27000, "-backend", fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", r.base.BackendHTTP, r.base.BackendWS))
			},
		},
		{
			name: "nginx", base: 21000, confs: []string{"nginx.conf"}, plain: true,
			argv: func(r *runner, c []string) [][]string {
				return [][]string{{"nginx", "-p", r.dir, "-c", c[0]}}
			},
		},
		{
			name: "haproxy", base: 22000, confs: []string{"haproxy.cfg"}, plain: true,
			argv: func(r *runner, c []string) [][]string {
				return [][]string{{"haproxy", "-db", "-f", c[0]}}
			},
		},
		{
			name: "hitch", base: 23000, confs: []string{"hitch.conf", "hitch-openssl.cnf"},
			instances: func(d tmplData) []tmplData {
				var out []tmplData
				for _, fb := range [][2]int{{d.TLS, d.BackendHTTP}, {d.WS, d.BackendWS}, {d.TLSR, d.BackendHTTP}, {d.WSR, d.BackendWS}} {
					d.Frontend, d.Backend = fb[0], fb[1]
					out = append(out, d)
				}
				return out
			},
			argv: func(r *runner, c []string) [][]string {
				// TLS and WS without tickets, as the other peers' (see
				// hitch.conf); TLSR and WSR with OpenSSL's.
				noTickets := "OPENSSL_CONF=" + c[4]
				return [][]string{
					{"env", noTickets, "hitch", "--config", c[0]},
					{"env", noTickets, "hitch", "--config", c[1]},
					{"hitch", "--config", c[2]},
					{"hitch", "--config", c[3]},
				}
			},
		},
	}
}

func (p *peer) data(r *runner) tmplData {
	d := r.base
	d.TLS, d.WS, d.Plain, d.Pass = p.base, p.base+1, p.base+2, p.base+3
	if p.admin {
		d.Admin = p.base + 4
	}
	d.TLSR, d.WSR = p.base+5, p.base+6
	return d
}

// takesPart reports whether p runs in scenario sc.
func (p *peer) takesPart(sc *scenario) bool {
	return sc.applies(p) && (p.only == nil || slices.Contains(p.only, sc.id))
}

// listeners are the ports the peer listens on.
func (d tmplData) listeners() []int {
	ports := []int{d.TLS, d.WS, d.Plain, d.Pass, d.TLSR, d.WSR}
	if d.Admin != 0 {
		ports = append(ports, d.Admin)
	}
	return ports
}

// errNoAdmin: the sluice binary refuses the [admin] section, so it predates
// the admin listener (issue 15).
type errNoAdmin struct{ out string }

func (e *errNoAdmin) Error() string {
	return "this sluice does not accept the [admin] section (no admin listener yet?): " + e.out
}

// render writes the peer's configuration files into the work directory.
func (r *runner) render(name string, d tmplData, out string) (string, error) {
	t, err := template.ParseFiles(filepath.Join(r.peersDir, name))
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", name, err)
	}
	path := filepath.Join(r.dir, out)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := t.Execute(f, d); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return path, nil
}

// renderPeer renders the peer's configuration files and returns their
// paths in the order argv takes them.
func (r *runner) renderPeer(p *peer, d tmplData) ([]string, error) {
	var paths []string
	confs := p.confs
	if p.instances != nil {
		for i, di := range p.instances(d) {
			path, err := r.render(confs[0], di, fmt.Sprintf("%s-%d-%s", p.name, i, confs[0]))
			if err != nil {
				return nil, err
			}
			paths = append(paths, path)
		}
		confs = confs[1:]
	}
	for _, c := range confs {
		path, err := r.render(c, d, p.name+"-"+c)
		if err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// start renders and starts the peer pinned to the terminator CPU, and waits
// for its TLS listener.
func (r *runner) startPeer(p *peer) error {
	d := p.data(r)
	for _, port := range d.listeners() {
		if err := waitFree(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	rendered, err := r.renderPeer(p, d)
	if err != nil {
		return err
	}
	if p.admin {
		// A sluice without the admin listener refuses the configuration
		// (unknown keys are errors): say so plainly, before starting it.
		argv := append(slices.Clone(p.argv(r, rendered)[0]), "-check")
		if out, err := runOutput(argv...); err != nil {
			out = strings.TrimSpace(out)
			if strings.Contains(out, "admin: unknown key") {
				return fmt.Errorf("%s: %w", p.name, &errNoAdmin{out})
			}
			return fmt.Errorf("%s: %s: %w: %s", p.name, strings.Join(argv, " "), err, out)
		}
	}
	for i, argv := range p.argv(r, rendered) {
		pr, err := r.procs.start(r.dir, fmt.Sprintf("%s-%d", p.name, i), r.termCPU, p.env, argv...)
		if err != nil {
			r.stopPeer(p)
			return err
		}
		p.procs = append(p.procs, pr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	wait := []int{d.TLS, d.WS, d.TLSR, d.WSR}
	if d.Admin != 0 {
		wait = append(wait, d.Admin)
	}
	for _, port := range wait {
		if err := waitPort(ctx, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			r.stopPeer(p)
			return fmt.Errorf("%s: %w (see %s/%s-0.log)", p.name, err, r.dir, p.name)
		}
	}
	for _, port := range []int{d.TLS, d.WS} {
		if err := checkNoResumption(ctx, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			r.stopPeer(p)
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

func (r *runner) stopPeer(p *peer) {
	for _, pr := range p.procs {
		pr.stop()
	}
	p.procs = nil
}

// pids are the peer's processes and all their descendants.
func (p *peer) pids() []int {
	var pids []int
	for _, pr := range p.procs {
		pids = append(pids, tree(pr.pid())...)
	}
	return pids
}

// usage adds up what the peer's processes and their children have used.
func (p *peer) usage() usage {
	var u usage
	for _, pid := range p.pids() {
		if st, err := readStat(pid); err == nil {
			u.utime += st.utime
			u.stime += st.stime
			u.minflt += st.minflt
		}
	}
	return u
}

// rss adds up all of the peer's processes and their children.
func (p *peer) rss() int64 {
	var s int64
	for _, pr := range p.procs {
		s += rssBytes(pr.pid())
	}
	return s
}

// version asks a peer binary for its version line.
func version(argv ...string) string {
	out, _ := runOutput(argv...)
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	return line
}
