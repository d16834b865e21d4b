// Command loadgen opens many TLS or WebSocket connections through a TLS
// terminator for the bench runner's S4 ("hold"), S5 ("ws"), S3r ("conn")
// and S7 ("storm" and "stay") scenarios, and floods and probes it for
// bench/attack.sh ("flood", "probe").
//
//	loadgen -mode hold -addr 127.0.0.1:8443 -conns 10000 [-dialers 64] [-sni localhost] [-timeout 60s]
//	loadgen -mode ws -url wss://127.0.0.1:8443/echo -conns 10000 [-dialers 64] [-active 0.1]
//	        [-rate 1] [-size 64] [-duration 20s] [-timeout 60s]
//	loadgen -mode conn -addr 127.0.0.1:8443 -conns 64 [-resume] [-path /] [-duration 20s]
//	loadgen -mode storm -url wss://127.0.0.1:8443/echo -conns 10000 [-dial-timeout 30s] [-timeout 300s]
//	loadgen -mode stay -url wss://127.0.0.1:8443/echo -conns 100 [-rate 10] [-size 64] [-timeout 300s]
//	loadgen -mode flood -addr 127.0.0.1:8443 -conns 64 [-duration 20s]
//	loadgen -mode probe -addr 127.0.0.1:8443 [-interval 20ms] [-path /] [-duration 20s]
//
// Common flags: -src "127.0.0.2-127.0.0.20" (or a comma list, or both)
// spreads the connections round-robin over local source addresses, to avoid
// ephemeral port exhaustion on loopback; -dial-timeout bounds each dial
// (TCP connect, TLS handshake and, in ws, storm and stay modes, the HTTP
// upgrade). TLS is 1.3 only, with X25519 as the only key exchange (what
// wrk's OpenSSL uses), and certificates are not verified (benchmark
// certificates are self-signed). The soft RLIMIT_NOFILE is raised to the
// hard limit.
//
// Protocol with the orchestrator: stderr carries a progress line rewritten
// in place with \r (at most 5 times a second), for humans. stdout carries
// tagged JSON lines, for the orchestrator:
//
//	READY {"opened":N,"failed":F,"open_seconds":S,"errors":[...]}
//
// once every dial has finished (failures are counted, never fatal). Then,
// in hold mode, the connections are kept idle until stdin reaches EOF or
// -timeout expires, and after closing them all loadgen prints
//
//	DONE {"closed_by_peer":K,"held_seconds":H,"timed_out":false}
//
// with, when K > 0, "peer_close_p50_s" and "peer_close_max_s": how long
// after opening those K connections were closed by the peer.
//
// In ws mode loadgen waits for one line on stdin ("GO") or its EOF, then
// round(active*conns) connections echo -size byte binary messages at -rate
// per second each for -duration while the others stay idle, and it prints
//
//	RESULT {"conns":N,"active":A,"messages":M,"errors":E,"dropped_conns":D,
//	        "p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..,"seconds":..}
//
// before closing every connection with status 1000.
//
// In storm mode loadgen opens -conns WebSocket connections, prints READY
// like ws mode and waits for GO; then it closes and reopens them all at
// once, twice: first with full handshakes (every client starts with an
// empty session cache), then resuming the sessions of the tickets the
// first storm received (see storm.go). Before each storm it pauses 1 s,
// prints
//
//	STORM {"resume":false}
//
// and waits for a line on stdin (or its EOF); once every reopen has
// completed or failed it prints CALM {"resume":false}. At the end it
// prints
//
//	RESULT {"conns":N,"storms":[{"resume":false,"movers":M,"reopened":R,"failed":F,
//	        "resumed":X,"all_back_s":..,"seconds":..,"upgrade_p50_ms":..,
//	        "upgrade_p99_ms":..,"upgrade_max_ms":..,"errors":[...]},{"resume":true,...}],
//	        "seconds":..}
//
// In stay mode, the connections that stay through the storms (another
// process, so that the storm's handshakes do not queue their round trips
// in this one's scheduler), loadgen opens -conns WebSocket connections,
// prints READY, waits for GO, and every connection echoes a -size byte
// message -rate times a second until stdin's EOF. A line "WINDOW name" on
// stdin starts a window: the round trips sent from then on count in it
// (before any, in "calm"); loadgen answers WINDOW {"name":"name"} once it
// applies. At EOF it prints
//
//	RESULT {"conns":N,"windows":{"calm":{"messages":..,"errors":..,"dropped_conns":..,
//	        "p50_ms":..,"p99_ms":..,"max_ms":..},"name":{...}},"seconds":..}
//
// In conn mode -conns workers each connect, complete a TLS handshake,
// send GET -path with "Connection: close", read the response to EOF and
// close, as fast as they can, for -duration. With -resume they share a
// session cache, so every handshake after the first tickets arrived
// resumes. It prints
//
//	RESULT {"requests":N,"handshakes":H,"resumed":R,"failed":F,"requests_per_s":..,
//	        "p50_ms":..,"p99_ms":..,"max_ms":..,"seconds":..,"errors":[...]}
//
// (the latencies are of the completed requests, from connect to EOF).
//
// In flood mode -conns workers each connect, complete a full TLS 1.3
// handshake (never resumed) and close, as fast as they can, for -duration;
// then loadgen prints
//
//	RESULT {"handshakes":N,"refused":R,"reset":S,"timeout":T,"other":O,
//	        "handshakes_per_s":..,"p50_ms":..,"p99_ms":..,"max_ms":..,"seconds":..}
//
// (refused: ECONNREFUSED; reset: a RST or EOF during the handshake;
// timeout: -dial-timeout expired; the latencies are of the completed
// handshakes). In probe mode one well-behaved client, every -interval for
// -duration, times a new connection (connect, handshake, one HTTP/1.1
// GET -path and its response) and, side by side, one GET on a connection
// it keeps open, and prints
//
//	RESULT {"new":{"ok":..,"failed":..,"refused":..,"reset":..,"timeout":..,
//	        "p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..},"established":{...},
//	        "reconnects":..,"seconds":..}
//
// Conn, flood and probe modes neither read stdin nor print READY.
//
// The whole run is bounded by -timeout. loadgen exits 2 on usage errors
// and 0 otherwise; the only other failure, exit 1, is being unable to
// write to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// config is the parsed and validated command line.
type config struct {
	mode        string        // "hold", "ws", "conn", "storm", "stay", "flood" or "probe"
	addr        string        // hold, conn, flood, probe: host:port of the TLS listener
	plain       bool          // hold: plain TCP connections, no TLS
	url         string        // ws, storm, stay: ws:// or wss:// URL of the echo endpoint
	sni         string        // TLS server name; "" derives it from addr/url
	conns       int           // connections to open; conn, flood: workers
	dialers     int           // parallel dialers
	dialTimeout time.Duration // bound of one dial
	timeout     time.Duration // bound of the whole run
	src         []netip.Addr  // local source addresses, round-robin; nil for any
	active      float64       // ws: fraction of connections that echo
	rate        float64       // ws: messages per second per active connection; stay: per connection
	size        int           // ws, stay: message size in bytes
	duration    time.Duration // ws: length of the echo phase; conn, flood, probe: of the run
	interval    time.Duration // probe: time between probes
	path        string        // conn, probe: path of the GET requests
	resume      bool          // conn: keep session tickets and resume
}

// maxMessageSize bounds -size (the demo backend's read limit is 1 MiB).
const maxMessageSize = 1 << 20

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}

	limit, err := raiseNoFileLimit()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: raising RLIMIT_NOFILE:", err)
	} else if need := uint64(cfg.conns) + 64; need > limit {
		fmt.Fprintf(os.Stderr, "loadgen: warning: RLIMIT_NOFILE is %d, %d connections need about %d\n", limit, cfg.conns, need)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := map[string]func(context.Context, config, io.Reader, io.Writer, io.Writer) error{
		"hold": runHold, "ws": runWS, "conn": runConn, "storm": runStorm, "stay": runStay, "flood": runFlood, "probe": runProbe,
	}[cfg.mode]
	if err := run(ctx, cfg, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		stop()
		os.Exit(1)
	}
}

// parseFlags parses and validates the command line; flag errors are
// printed to stderr by the flag package, validation errors are returned.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	var src string
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.mode, "mode", "", "`hold` (idle TLS connections), ws (WebSocket echo), conn (a connection per request), storm (reconnect storms), stay (echoes through the storms), flood (handshakes) or probe (latency)")
	fs.StringVar(&cfg.addr, "addr", "", "hold, conn, flood, probe: TLS `host:port` to connect to")
	fs.BoolVar(&cfg.plain, "plain", false, "hold: plain TCP connections instead of TLS")
	fs.StringVar(&cfg.url, "url", "", "ws, storm, stay: WebSocket `URL` (wss://host:port/echo)")
	fs.StringVar(&cfg.sni, "sni", "", "TLS server `name` (default: the host of -addr/-url, or localhost if that is an IP address)")
	fs.IntVar(&cfg.conns, "conns", 1000, "connections to open (conn, flood: parallel workers)")
	fs.IntVar(&cfg.dialers, "dialers", 64, "parallel dialers")
	fs.DurationVar(&cfg.dialTimeout, "dial-timeout", 10*time.Second, "timeout of one dial (connect, handshake, upgrade)")
	fs.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "bound of the whole run")
	fs.StringVar(&src, "src", "", "local source `addresses`: a range 127.0.0.2-127.0.0.20 and/or a comma list (default: any)")
	fs.Float64Var(&cfg.active, "active", 0.1, "ws: fraction of the connections that echo messages")
	fs.Float64Var(&cfg.rate, "rate", 1, "ws: messages per second per active connection; stay: per connection")
	fs.IntVar(&cfg.size, "size", 64, "ws, stay: message size in `bytes`")
	fs.DurationVar(&cfg.duration, "duration", 20*time.Second, "ws: length of the echo phase; conn, flood, probe: of the run")
	fs.DurationVar(&cfg.interval, "interval", 20*time.Millisecond, "probe: time between probes")
	fs.StringVar(&cfg.path, "path", "/", "conn, probe: `path` of the GET requests")
	fs.BoolVar(&cfg.resume, "resume", false, "conn: keep the session tickets and resume sessions")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if cfg.src, err = parseSources(src); err != nil {
		return config{}, err
	}
	return cfg, cfg.validate()
}

// validate checks the values that parseFlags cannot check one by one.
func (cfg config) validate() error {
	switch cfg.mode {
	case "hold", "conn", "flood", "probe":
		if _, _, err := net.SplitHostPort(cfg.addr); err != nil {
			return fmt.Errorf("-addr: %w", err)
		}
		if cfg.mode != "hold" && cfg.duration <= 0 {
			return fmt.Errorf("-duration %v: want > 0", cfg.duration)
		}
		if cfg.mode == "probe" && cfg.interval <= 0 {
			return fmt.Errorf("-interval %v: want > 0", cfg.interval)
		}
		if (cfg.mode == "probe" || cfg.mode == "conn") && (!strings.HasPrefix(cfg.path, "/") || strings.ContainsAny(cfg.path, " \t\r\n")) {
			return fmt.Errorf("-path %q: want an absolute path without spaces", cfg.path)
		}
		if cfg.mode != "hold" && cfg.timeout <= cfg.duration {
			return fmt.Errorf("-timeout %v: want more than -duration %v", cfg.timeout, cfg.duration)
		}
	case "ws":
		if _, err := wsTarget(cfg.url); err != nil {
			return err
		}
		if cfg.active < 0 || cfg.active > 1 {
			return fmt.Errorf("-active %g: want a fraction in [0, 1]", cfg.active)
		}
		if cfg.active > 0 && !(cfg.rate > 0) {
			return fmt.Errorf("-rate %g: want > 0", cfg.rate)
		}
		if cfg.size < 1 || cfg.size > maxMessageSize {
			return fmt.Errorf("-size %d: want 1 to %d", cfg.size, maxMessageSize)
		}
		if cfg.duration <= 0 {
			return fmt.Errorf("-duration %v: want > 0", cfg.duration)
		}
	case "storm":
		if _, err := wsTarget(cfg.url); err != nil {
			return err
		}
	case "stay":
		if _, err := wsTarget(cfg.url); err != nil {
			return err
		}
		if !(cfg.rate > 0) {
			return fmt.Errorf("-rate %g: want > 0", cfg.rate)
		}
		if cfg.size < 1 || cfg.size > maxMessageSize {
			return fmt.Errorf("-size %d: want 1 to %d", cfg.size, maxMessageSize)
		}
	default:
		return fmt.Errorf("-mode %q: want hold, ws, conn, storm, stay, flood or probe", cfg.mode)
	}
	if cfg.conns < 1 {
		return fmt.Errorf("-conns %d: want >= 1", cfg.conns)
	}
	if cfg.dialers < 1 {
		return fmt.Errorf("-dialers %d: want >= 1", cfg.dialers)
	}
	if cfg.dialTimeout <= 0 || cfg.timeout <= 0 {
		return errors.New("-dial-timeout and -timeout must be > 0")
	}
	return nil
}

// wsTarget parses a ws:// or wss:// URL and returns it.
func wsTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("-url: %w", err)
	}
	if (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("-url %q: want ws://host[:port]/path or wss://host[:port]/path", raw)
	}
	return u, nil
}
