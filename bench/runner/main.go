// Command runner is sluice's benchmark suite: it starts one plain-HTTP
// backend (nginx, 1 worker) and a WebSocket echo backend, then nginx,
// HAProxy, hitch and sluice as TLS terminators configured alike, and runs
// each scenario against each of them, repeated and interleaved, with the
// terminators pinned to one CPU and everything else to the other. It writes
// bench/results/latest.md and latest.svg. bench/run.sh (make bench) installs
// the peers and calls it.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// runner holds the settings and shared state of one benchmark run.
type runner struct {
	dir        string // scratch directory for configs, logs, certificates
	peersDir   string // bench/peers templates
	wrkScript  string
	loadgenBin string
	sluiceBin  string // also the demo backend
	termCPU    string // CPU the terminators are pinned to
	loadCPU    string // CPU for load generators and backends
	duration   time.Duration
	wsDuration time.Duration
	wsQuiet    time.Duration // S5s: interval between two messages on one connection
	idleWait   time.Duration // S4/S4p: how long connections stay idle before RSS is read
	reps       int
	conns      int
	srcRange   string
	progress   io.Writer
	base       tmplData
	procs      procs
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		r       runner
		out     = flag.String("out", "bench/results", "directory for latest.md and latest.svg")
		sluice  = flag.String("sluice", "bin/sluice", "sluice binary")
		bare    = flag.String("tlsbare", "bin/tlsbare", "bench/tlsbare binary (the "+barePeer+" and "+proxyPeer+" references beside sluice)")
		only    = flag.String("scenarios", "", "comma-separated scenario ids to run (default all)")
		peerSel = flag.String("peers", "", "comma-separated peers to run: sluice, "+metricsPeer+", "+barePeer+", "+proxyPeer+", nginx, haproxy, hitch (default all)")
		keep    = flag.Bool("keep", false, "keep the scratch directory (configurations, certificates, every process's log of its last run) and print its path")
		metOnly = flag.String("metrics-scenarios", "S1", "comma-separated scenario ids "+metricsPeer+" (sluice with its admin listener scraped once a second) takes part in")
	)
	flag.StringVar(&r.peersDir, "peers-dir", "bench/peers", "configuration templates")
	flag.StringVar(&r.wrkScript, "wrk-script", "bench/wrk/report.lua", "wrk report script")
	flag.StringVar(&r.loadgenBin, "loadgen", "bin/loadgen", "load generator binary")
	flag.StringVar(&r.termCPU, "term-cpu", "0", "CPU for the terminators")
	flag.StringVar(&r.loadCPU, "load-cpu", "1", "CPU for load generators and backends")
	flag.DurationVar(&r.duration, "duration", 8*time.Second, "length of each wrk run")
	flag.DurationVar(&r.wsDuration, "ws-duration", 15*time.Second, "length of each WebSocket echo phase (S5s: at least 2.5 times -ws-quiet)")
	flag.DurationVar(&r.wsQuiet, "ws-quiet", 10*time.Second, "S5s: interval between two messages on one connection")
	flag.DurationVar(&r.idleWait, "idle-wait", 10*time.Second, "S4/S4p: keep the connections idle this long after they settle, then read RSS again")
	flag.IntVar(&r.reps, "reps", 3, "repetitions of each scenario per peer")
	flag.IntVar(&r.conns, "conns", 10000, "connections for S4, S5, S5s and S7 (capped by the fd limit)")
	flag.StringVar(&r.srcRange, "src", "127.0.0.2-127.0.0.40", "client source addresses for the loadgen scenarios (S3r, S4, S5, S5s, S7)")
	flag.Parse()
	r.progress = os.Stderr
	if r.wsQuiet <= 0 {
		return fmt.Errorf("-ws-quiet %v: want > 0", r.wsQuiet)
	}

	all := peers(*sluice, *bare, strings.Split(*metOnly, ","))
	asked := strings.Split(*peerSel, ",")
	if *peerSel != "" {
		for _, name := range asked {
			if !slices.ContainsFunc(all, func(p *peer) bool { return p.name == name }) {
				var names []string
				for _, p := range all {
					names = append(names, p.name)
				}
				return fmt.Errorf("-peers: no peer %q (there are %s)", name, strings.Join(names, ", "))
			}
		}
	}
	var ps []*peer
	for _, p := range all {
		if *peerSel == "" || slices.Contains(asked, p.name) {
			ps = append(ps, p)
		}
	}
	scs := scenarios(r.wsQuiet)
	var selected []*scenario
	for _, sc := range scs {
		if *only == "" || slices.Contains(strings.Split(*only, ","), sc.id) {
			selected = append(selected, sc)
		}
	}

	// Interrupted (Ctrl-C, a CI timeout): stop every process started, by
	// PID, before going, since deferred cleanups do not run on a signal.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v: stopping everything started\n", s)
		r.procs.stopAll()
		os.Exit(1)
	}()

	// A terminator needs two descriptors per connection (client and
	// backend); the hard limit of this machine may not allow N of them.
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = lim.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	requested := r.conns
	if maxConns := int(lim.Max-512) / 2; r.conns > maxConns {
		r.conns = maxConns
	}

	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	if *keep {
		defer fmt.Fprintf(os.Stderr, "bench: scratch directory kept: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	// Workers run as nobody (nginx, hitch) and must reach the bodies.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	r.dir = dir
	if err := r.setupFiles(int(lim.Max)); err != nil {
		return err
	}

	r.sluiceBin = *sluice
	backends, err := r.startBackends()
	if err != nil {
		return err
	}
	defer func() {
		for _, b := range backends {
			b.stop()
		}
	}()

	defer func() {
		for _, p := range ps {
			r.stopPeer(p)
		}
	}()
	var notes []string
	for _, p := range slices.Clone(ps) {
		if !slices.ContainsFunc(selected, p.takesPart) {
			continue // e.g. sluice+metrics when S1 is not selected
		}
		if err := r.startPeer(p); err != nil {
			// Until sluice has its admin listener, a run that did not ask
			// for sluice+metrics by name (make bench, make bench-smoke)
			// goes on without it, and says so.
			var na *errNoAdmin
			if errors.As(err, &na) && *peerSel == "" {
				fmt.Fprintf(r.progress, "bench: WARNING: leaving %s out: %v\n", p.name, err)
				notes = append(notes, fmt.Sprintf("%s was left out: the sluice binary refuses the `[admin]` section, so the cost of metrics was not measured.", p.name))
				ps = slices.DeleteFunc(ps, func(q *peer) bool { return q == p })
				continue
			}
			return err
		}
	}

	res := &results{
		started:   time.Now(),
		requested: requested,
		conns:     r.conns,
		reps:      r.reps,
		duration:  r.duration,
		machine:   machine(),
		versions:  versions(*sluice),
		samples:   map[string]map[string][]metrics{},
		variants:  map[string]string{},
		notes:     notes,
	}
	total := 0
	for _, sc := range selected {
		n := 0
		for _, p := range ps {
			if p.takesPart(sc) {
				n++
			}
		}
		switch {
		case sc.direct != nil && sc.directOnce:
			n++ // a direct run at the start of each repetition
		case sc.direct != nil:
			n *= 2 // a direct run before each peer's
		}
		total += n * sc.reps(r.reps)
	}
	done := 0
	for _, sc := range selected {
		res.scenarios = append(res.scenarios, sc)
		res.samples[sc.id] = map[string][]metrics{}
		for rep := range sc.reps(r.reps) {
			// Interleave, and rotate the order each repetition so no peer
			// always runs right after another.
			order := slices.Clone(ps)
			k := rep % len(order)
			order = append(order[k:], order[:k]...)
			directRun := false
			for _, p := range order {
				if !p.takesPart(sc) {
					continue
				}
				// A direct run right before each peer's pairs them: the
				// machine's speed drifts by several percent within a
				// minute, more than a proxy's cost to measure.
				var direct metrics
				if sc.direct != nil && (!sc.directOnce || !directRun) {
					directRun = true
					done++
					fmt.Fprintf(r.progress, "[%3d/%d] %s rep %d: direct, before %s (elapsed %s)\n", done, total, sc.id, rep+1, p.name,
						time.Since(res.started).Round(time.Second))
					var err error
					if direct, err = sc.direct(&r); err != nil {
						return fmt.Errorf("%s direct: %w", sc.id, err)
					}
					res.samples[sc.id]["direct"] = append(res.samples[sc.id]["direct"], direct)
				}
				done++
				fmt.Fprintf(r.progress, "[%3d/%d] %s rep %d: %s (elapsed %s)\n", done, total, sc.id, rep+1, p.name,
					time.Since(res.started).Round(time.Second))
				if sc.fresh {
					r.stopPeer(p)
					if err := r.startPeer(p); err != nil {
						return err
					}
				}
				m, err := r.measure(sc, p)
				if err != nil {
					return fmt.Errorf("%s %s: %w", sc.id, p.name, err)
				}
				if direct != nil && direct["mib_s"] > 0 {
					m["pct_direct"] = 100 * m["mib_s"] / direct["mib_s"]
				}
				res.samples[sc.id][p.name] = append(res.samples[sc.id][p.name], m)
			}
		}
	}
	res.finished = time.Now()
	res.peers = nil
	for _, p := range ps {
		res.peers = append(res.peers, p.name)
		if p.variantOf != "" {
			res.variants[p.name] = p.variantOf
		}
	}
	return res.write(*out)
}

// setupFiles makes the certificate, the bodies and the backend settings.
func (r *runner) setupFiles(noFile int) error {
	if err := os.MkdirAll(filepath.Join(r.dir, "www"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(r.dir, "tmp"), 0o755); err != nil {
		return err
	}
	body := make([]byte, 1<<20)
	rand.Read(body)
	if err := os.WriteFile(filepath.Join(r.dir, "www", "1m"), body, 0o644); err != nil {
		return err
	}
	certPEM, keyPEM, err := ecdsaCert()
	if err != nil {
		return err
	}
	cert, key, both := filepath.Join(r.dir, "cert.pem"), filepath.Join(r.dir, "key.pem"), filepath.Join(r.dir, "both.pem")
	for path, data := range map[string][]byte{cert: certPEM, key: keyPEM, both: append(append([]byte{}, certPEM...), keyPEM...)} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
	}
	r.base = tmplData{
		Dir: r.dir, Cert: cert, Key: key, PEM: both,
		NoFile: noFile, WorkerConns: noFile - 100, MaxConn: noFile/2 - 100,
		BackendHTTP: 19080, BackendTLS: 19443, BackendWS: 19081,
		Body64: strings.Repeat("x", 63) + "\n",
	}
	if os.Geteuid() == 0 {
		r.base.User = "nobody"
	}
	return nil
}

// ecdsaCert makes the one ECDSA P-256 certificate every terminator serves.
func ecdsaCert() ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// startBackends starts the nginx HTTP backend and the WebSocket echo
// backend (sluice's demo backend) on the load CPU.
func (r *runner) startBackends() ([]*proc, error) {
	for _, port := range []int{r.base.BackendHTTP, r.base.BackendTLS, r.base.BackendWS} {
		if err := waitFree(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			return nil, fmt.Errorf("backend: %w", err)
		}
	}
	conf, err := r.render("backend-nginx.conf", r.base, "backend-nginx.conf")
	if err != nil {
		return nil, err
	}
	nginx, err := r.procs.start(r.dir, "backend-nginx", r.loadCPU, nil, "nginx", "-p", r.dir, "-c", conf)
	if err != nil {
		return nil, err
	}
	ws, err := r.procs.start(r.dir, "backend-ws", r.loadCPU, []string{"GOMAXPROCS=1"}, r.sluiceBin, "demo-backend",
		"-listen", fmt.Sprintf("127.0.0.1:%d", r.base.BackendWS))
	if err != nil {
		nginx.stop()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, port := range []int{r.base.BackendHTTP, r.base.BackendTLS, r.base.BackendWS} {
		if err := waitPort(ctx, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			nginx.stop()
			ws.stop()
			return nil, fmt.Errorf("backend: %w", err)
		}
	}
	return []*proc{nginx, ws}, nil
}
