package l4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/tlsterm"
)

// The kernel TLS tests run through a whole Proxy. Where the kernel has no
// TLS (this build machine) they check the fallback; make test-ktls runs
// them inside Debian kernels, where connections are handed over.

// kernelTLS reports whether this kernel attaches the TLS ULP.
func kernelTLS() bool { return tlsterm.ProbeKernelTLS() == nil }

// needKernelTLS skips a test on kernels without TLS.
func needKernelTLS(t *testing.T) {
	t.Helper()
	if !kernelTLS() {
		t.Skip("no kernel TLS here; make test-ktls runs this in a VM")
	}
}

// TestKernelTLSRecordLayer: every terminated connection's access line and
// sluice_tls_record_layer_total say where its record layer went, and why
// not to the kernel. ktls = "require" refuses a kernel without TLS.
func TestKernelTLSRecordLayer(t *testing.T) {
	for _, mode := range []string{"", KTLSOff, KTLSRequire} {
		t.Run("ktls="+mode, func(t *testing.T) {
			w := newWorld(t)
			be := w.backend(echo)
			cfg := w.simple(be.addr())
			cfg.Listeners[0].TLS.KTLS = mode
			cfg.Listeners[0].Address = "127.0.0.1:0"
			if mode == KTLSRequire && !kernelTLS() {
				_, err := New(cfg, w.logger)
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Path != "listener[0].tls.ktls" || !strings.Contains(err.Error(), "this kernel cannot") {
					t.Fatalf("New with ktls = require on a kernel without TLS: %v", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			p, addrs := w.serve(cfg)
			c := w.mustDialTLS(addrs[0], nil)
			io.WriteString(c, "ping\n")
			if got := readLine(t, c); got != "ping" {
				t.Fatalf("echo %q", got)
			}
			c.Close()
			layer, reason := layerKernel, "none"
			want := []string{"msg=access", "record_layer=" + layerKernel}
			switch {
			case mode == KTLSOff:
				layer, reason = layerUserspace, fallbackOff
				want = []string{"msg=access", "record_layer=userspace"}
			case !kernelTLS():
				layer, reason = layerUserspace, fallbackUnavailable
				want = []string{"msg=access", "record_layer=userspace", "ktls_fallback=unavailable"}
			}
			line := w.waitLog(want...)
			if mode == KTLSOff && strings.Contains(line, "ktls_fallback") {
				t.Errorf("ktls = off, and the line names a fallback: %s", line)
			}
			if v, ok := scrape(t, p).value("sluice_tls_record_layer_total", "listener", "test", "layer", layer, "reason", reason); !ok || v != 1 {
				t.Errorf("sluice_tls_record_layer_total{layer=%q,reason=%q} = %v (%v), want 1", layer, reason, v, ok)
			}
		})
	}
}

// stream is one side's bytes of a test stream, and their hash.
func stream(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// hashingBackend reads everything the client sends until EOF while
// sending out at the same time, then closes its side; it reports the
// SHA-256 of what it read.
func hashingBackend(out []byte, got chan<- [32]byte) func(net.Conn) {
	return func(c net.Conn) {
		c.SetDeadline(time.Now().Add(testTimeout))
		var wg sync.WaitGroup
		wg.Go(func() {
			c.Write(out)
		})
		h := sha256.New()
		io.Copy(h, c)
		wg.Wait()
		c.(*net.TCPConn).CloseWrite()
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
		c.Close()
	}
}

// TestKernelTLSStreams: through a kTLS-terminated route, for TLS 1.2 and
// 1.3 with each cipher the client can choose, streams go both ways at
// once and arrive byte for byte (SHA-256), the client's end reaches the
// backend as a FIN after its close_notify, and the backend's reaches the
// client as close_notify.
func TestKernelTLSStreams(t *testing.T) {
	needKernelTLS(t)
	cases := []struct {
		name   string
		client *tls.Config
	}{
		{"TLS1.3", &tls.Config{MinVersion: tls.VersionTLS13}},
		{"TLS1.2/AES-128-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}},
		{"TLS1.2/AES-256-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}},
		{"TLS1.2/ChaCha20-Poly1305", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}},
	}
	const size = 512 << 10
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			up, down := stream(uint64(2*i), size), stream(uint64(2*i+1), size)
			got := make(chan [32]byte, 1)
			be := w.backend(hashingBackend(down, got))
			p, addrs := w.serve(w.simple(be.addr()))
			c := w.mustDialTLS(addrs[0], tc.client)
			c.SetDeadline(time.Now().Add(testTimeout))
			var wg sync.WaitGroup
			var werr error
			wg.Go(func() {
				if _, werr = c.Write(up); werr == nil {
					werr = c.CloseWrite()
				}
			})
			h := sha256.New()
			n, rerr := io.Copy(h, c) // io.EOF only after close_notify
			wg.Wait()
			if werr != nil || rerr != nil {
				t.Fatalf("client: write %v, read %v after %d bytes", werr, rerr, n)
			}
			if sum := <-got; sum != sha256.Sum256(up) {
				t.Errorf("backend read a stream whose SHA-256 differs from the client's")
			}
			if !bytes.Equal(h.Sum(nil), sha256Sum(down)) || n != size {
				t.Errorf("client read %d bytes, SHA-256 differs: %v", n, !bytes.Equal(h.Sum(nil), sha256Sum(down)))
			}
			c.Close()
			line := w.waitLog("msg=access", "record_layer=kernel", fmt.Sprintf("bytes_in=%d", size), fmt.Sprintf("bytes_out=%d", size),
				"client_end=closed", "backend_end=closed")
			t.Logf("%s", line)
			checkPoolsEmpty(t, p)
		})
	}
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// checkPoolsEmpty: no relay holds a pipe once its connections ended.
func checkPoolsEmpty(t *testing.T, p *Proxy) {
	t.Helper()
	if st := p.pipes.Stats(); st.InUse != 0 {
		t.Errorf("%d pipes still in use", st.InUse)
	}
}

// TestKernelTLSEnds: a FIN without close_notify reaches the backend as a
// FIN, and the line says truncated; a record that fails authentication
// aborts both sides and is named; a backend that ends first sends
// close_notify, and the client's answer still flows.
func TestKernelTLSEnds(t *testing.T) {
	needKernelTLS(t)
	t.Run("client_fin_without_close_notify", func(t *testing.T) {
		e := connectThrough(t, "terminate", nil)
		io.WriteString(e.client, "ping")
		readExactly(t, e.backend, "ping")
		e.clientRaw.CloseWrite()
		if rest := readAll(t, e.backend); len(rest) != 0 {
			t.Fatalf("backend read %d more bytes", len(rest))
		}
		e.backendRaw.CloseWrite()
		e.w.waitLog("msg=access", "record_layer=kernel", "reason=client_truncated", "client_end=truncated")
	})
	t.Run("bad_record", func(t *testing.T) {
		e := connectThrough(t, "terminate", nil)
		io.WriteString(e.client, "ping")
		readExactly(t, e.backend, "ping")
		// An application data record whose tag cannot verify.
		bad := append([]byte{23, 3, 3, 0, 40}, bytes.Repeat([]byte{0x5a}, 40)...)
		if _, err := e.clientRaw.Write(bad); err != nil {
			t.Fatal(err)
		}
		expectReset(t, "backend", e.backend)
		e.w.waitLog("msg=access", "record_layer=kernel", "reason=client_error", "failed authentication")
	})
	t.Run("backend_fin_after_a_long_silence", func(t *testing.T) {
		// The backend is silent for longer than the idle timeout while
		// the client keeps the relay alive; the write deadline on the
		// client's socket, set with the backend's last bytes, has passed
		// when its FIN comes, and must not stop the close_notify.
		const idle = 300 * time.Millisecond
		e := connectThrough(t, "terminate", func(l *ListenerConfig) { l.IdleTimeout = Duration{idle} })
		io.WriteString(e.backend, "x")
		readExactly(t, e.client, "x")
		for i := range 8 {
			io.WriteString(e.client, "u")
			readExactly(t, e.backend, "u")
			if i < 7 {
				time.Sleep(idle / 4) // the silence is the subject
			}
		}
		e.backendRaw.CloseWrite()
		if got := readAll(t, e.client); len(got) != 0 { // io.EOF: close_notify came
			t.Fatalf("client read %q", got)
		}
		e.client.(*tls.Conn).CloseWrite()
		readAll(t, e.backend)
		e.w.waitLog("msg=access", "record_layer=kernel", "reason=backend_closed", "client_end=closed", "backend_end=closed")
	})
	t.Run("backend_first", func(t *testing.T) {
		e := connectThrough(t, "terminate", nil)
		io.WriteString(e.backend, "bye")
		e.backendRaw.CloseWrite()
		if got := readAll(t, e.client); string(got) != "bye" { // io.EOF: close_notify came
			t.Fatalf("client read %q", got)
		}
		io.WriteString(e.client, "late answer")
		e.client.(*tls.Conn).CloseWrite()
		if got := readAll(t, e.backend); string(got) != "late answer" {
			t.Fatalf("backend read %q", got)
		}
		e.w.waitLog("msg=access", "record_layer=kernel", "reason=backend_closed", "client_end=closed", "backend_end=closed")
	})
}

// TestKernelTLSRoutes: what happens before the hand-over still works: a
// WebSocket peek (its bytes reach the backend, the rest is spliced), a
// client certificate, resumption. A resumed TLS 1.2 session has no key
// to give the kernel and stays in userspace, and says so.
func TestKernelTLSRoutes(t *testing.T) {
	needKernelTLS(t)
	t.Run("websocket_peek", func(t *testing.T) {
		e := connectThrough(t, "websocket", nil)
		io.WriteString(e.client, "frame")
		readExactly(t, e.backend, "frame")
		io.WriteString(e.backend, "reply")
		readExactly(t, e.client, "reply")
		e.client.Close()
		e.backend.Close()
		e.w.waitLog("msg=access", "record_layer=kernel", "route=r")
	})
	t.Run("mtls", func(t *testing.T) {
		w := newWorld(t)
		be := w.backend(echo)
		caFile, clientCert := w.clientCA()
		cfg := w.simple(be.addr())
		cfg.Listeners[0].TLS.ClientCA, cfg.Listeners[0].TLS.ClientAuth = caFile, "require"
		_, addrs := w.serve(cfg)
		c := w.mustDialTLS(addrs[0], &tls.Config{Certificates: []tls.Certificate{clientCert("alice")}})
		io.WriteString(c, "ping\n")
		if got := readLine(t, c); got != "ping" {
			t.Fatalf("echo %q", got)
		}
		c.Close()
		w.waitLog("msg=access", "record_layer=kernel", "client_cn=alice")
	})
	for _, v := range []struct {
		name     string
		version  uint16
		fallback string
	}{{"resumed_TLS1.3", tls.VersionTLS13, ""}, {"resumed_TLS1.2", tls.VersionTLS12, tlsterm.FallbackResumed}} {
		t.Run(v.name, func(t *testing.T) {
			w := newWorld(t)
			be := w.backend(echo)
			_, addrs := w.serve(w.simple(be.addr()))
			cli := &tls.Config{MaxVersion: v.version, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			for i := range 2 {
				c := w.mustDialTLS(addrs[0], cli)
				io.WriteString(c, "ping\n")
				if got := readLine(t, c); got != "ping" {
					t.Fatalf("connection %d: echo %q", i, got)
				}
				if c.ConnectionState().DidResume != (i == 1) {
					t.Fatalf("connection %d: resumed %v", i, c.ConnectionState().DidResume)
				}
				c.Close()
			}
			if v.fallback == "" {
				w.waitLog("msg=access", "resumed=true", "record_layer=kernel")
			} else {
				w.waitLog("msg=access", "resumed=true", "record_layer=userspace", "ktls_fallback="+v.fallback)
			}
		})
	}
}

// TestKernelTLSParked: an idle kTLS connection parks both directions
// (no goroutine, no buffer, no pipe), and wakes for bytes either way.
func TestKernelTLSParked(t *testing.T) {
	needKernelTLS(t)
	e := connectThrough(t, "terminate", nil)
	for round := range 3 {
		waitParked(t, e.p, 2)
		msg := fmt.Sprintf("round %d", round)
		io.WriteString(e.client, msg)
		readExactly(t, e.backend, msg)
		waitParked(t, e.p, 2)
		io.WriteString(e.backend, msg)
		readExactly(t, e.client, msg)
	}
	e.client.Close()
	e.backend.Close()
	e.w.waitLog("msg=access", "record_layer=kernel")
	checkPoolsEmpty(t, e.p)
}

// waitParked waits until n relay directions are parked.
func waitParked(t *testing.T, p *Proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for p.parker.Parked() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d relay directions parked, want %d", p.parker.Parked(), n)
		}
		time.Sleep(10 * time.Millisecond) // polling a gauge, not ordering events
	}
}

// TestKernelTLSOpenSSL: openssl s_client, an implementation independent of
// crypto/tls, through a kTLS-terminated route, for each TLS 1.3 suite
// (only it can make a Go server pick AES-256-GCM). It then asks for a key
// update, which sluice follows on kernels that can rekey (it installs the
// client's next key, sends its own KeyUpdate and rekeys TX); on older ones
// the connection ends, and the line says why. The "moved" cases move the
// connection to another Proxy (a binary upgrade) before the key update:
// the traffic secrets went with it.
func TestKernelTLSOpenSSL(t *testing.T) {
	needKernelTLS(t)
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	rekey := tlsterm.ProbeKernel().Rekey
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		for _, move := range []bool{false, true} {
			name := tls.CipherSuiteName(suite)
			if move {
				name += "/moved"
			}
			t.Run(name, func(t *testing.T) { testOpenSSLKeyUpdate(t, bin, suite, rekey, move) })
		}
	}
}

func testOpenSSLKeyUpdate(t *testing.T, bin string, suite uint16, rekey, move bool) {
	w := newWorld(t)
	be := w.backend(echo)
	cfg := w.simple(be.addr())
	p, addrs := w.serve(cfg)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	// -no_ign_eof after -quiet turns s_client's commands back on:
	// a line "K" sends a KeyUpdate that asks for one back.
	cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", addrs[0], "-servername", "localhost",
		"-tls1_3", "-ciphersuites", tls.CipherSuiteName(suite), "-quiet", "-no_ign_eof")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	errPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// s_client says KEYUPDATE on stderr once it has sent one; a
	// line written before that could be read with the command,
	// and dropped with it.
	var stderr bytes.Buffer
	keyUpdated := make(chan struct{})
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			if sc.Text() == "KEYUPDATE" {
				close(keyUpdated)
			}
			stderr.Write(append(sc.Bytes(), '\n'))
		}
	}()
	defer func() {
		stdin.Close()
		cmd.Wait()
		<-stderrDone
		if t.Failed() {
			t.Logf("openssl stderr:\n%s", stderr.Bytes())
		}
	}()
	out := bufio.NewReader(stdout)
	line := func(want string) error {
		got, err := out.ReadString('\n')
		if err != nil || got != want {
			return fmt.Errorf("openssl printed %q, %v; want %q", got, err, want)
		}
		return nil
	}
	// Lines of digits: s_client takes lines starting with a
	// command letter as commands.
	big := hex.EncodeToString(stream(uint64(suite), 3000)) + "\n"
	for _, msg := range []string{"0 before\n", "1" + big} {
		io.WriteString(stdin, msg)
		if err := line(msg); err != nil {
			t.Fatal(err)
		}
	}
	if move {
		next, _ := w.serve(cfg)
		if moved, _, _ := moveTo(t, p, next); moved != 1 {
			t.Fatalf("moved %d connections, want 1", moved)
		}
	}
	io.WriteString(stdin, "K\n")
	select {
	case <-keyUpdated:
	case <-ctx.Done():
		t.Fatal("openssl sent no KeyUpdate")
	}
	io.WriteString(stdin, "2 after the key update\n")
	if !rekey {
		if err := line("2 after the key update\n"); err == nil {
			t.Fatal("the connection went on after a key update this kernel cannot follow")
		}
		w.waitLog("msg=access", "record_layer=kernel", "reason=client_error", "needs Linux 6.14")
		return
	}
	if err := line("2 after the key update\n"); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	if rest, _ := io.ReadAll(out); len(rest) != 0 {
		t.Fatalf("openssl printed %q after its last line", rest)
	}
	w.waitLog("msg=access", "record_layer=kernel", "cipher="+tls.CipherSuiteName(suite), "key_updates=1", "client_end=closed")
}
