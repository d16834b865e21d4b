package tlsterm

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"os/exec"
	"testing"
)

// tls13Suites are the TLS 1.3 suites, all of which the kernel takes.
var tls13Suites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}

// TestHandOverOpenSSL repeats the hand-over with openssl s_client as the
// client, an implementation independent of crypto/tls, for the TLS 1.3
// suites; only it can make a Go server choose TLS_AES_256_GCM_SHA384.
func TestHandOverOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	for _, suite := range tls13Suites {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			cert, _ := testCert(t)
			ln := listen(t)
			done := make(chan serverResult, 1)
			go serveHandOver(ln, WithKeyLog(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}), 0, 1, done)

			s := startSClient(t, bin, ln.Addr().String(), suite)
			msg := []byte("from openssl\n")
			if _, err := s.stdin.Write(msg); err != nil {
				t.Fatal(err)
			}
			want := bytes.Join(append([][]byte{userspaceMsg}, kernelMsgs...), nil)
			got := make([]byte, len(want))
			_, readErr := io.ReadFull(s.stdout, got)
			res := <-done
			if res.raw != nil {
				defer res.raw.Close()
			}
			if res.err != nil {
				t.Fatalf("server: %v; openssl: %s", res.err, s.stderr.Bytes())
			}
			if readErr != nil || !bytes.Equal(got, want) {
				t.Fatalf("openssl printed %q, %v; want %q; stderr: %s", got, readErr, want, s.stderr.Bytes())
			}
			if res.cs.CipherSuite != suite || !bytes.Equal(res.fromClient[0], msg) {
				t.Fatalf("negotiated %s, client record %q", tls.CipherSuiteName(res.cs.CipherSuite), res.fromClient[0])
			}
			k := res.keys
			t.Logf("TX seq %d, RX seq %d, TX crypto_info % x", k.TX.Seq, k.RX.Seq, k.TX.Marshal())
			fromClient, toClient := res.wire.captured()
			openCaptured(t, toClient, k.TX, len(kernelMsgs))
			openCaptured(t, fromClient, k.RX, 1)
		})
	}
}

// sClient is a running openssl s_client.
type sClient struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser // with -quiet, only what the server sent
	stderr *bytes.Buffer
}

// startSClient starts openssl s_client (bin) against addr, offering TLS 1.3
// with suite only, plus the extra flags. A cleanup closes its stdin and
// stops it.
func startSClient(t *testing.T, bin, addr string, suite uint16, extra ...string) *sClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	args := append([]string{"s_client", "-connect", addr, "-servername", "localhost",
		"-tls1_3", "-ciphersuites", tls.CipherSuiteName(suite), "-quiet"}, extra...)
	s := &sClient{cmd: exec.CommandContext(ctx, bin, args...), stderr: &bytes.Buffer{}}
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		cancel()
		t.Fatal(err)
	}
	if s.stdout, err = s.cmd.StdoutPipe(); err != nil {
		cancel()
		t.Fatal(err)
	}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stdin.Close()
		cancel()
		s.cmd.Wait()
	})
	return s
}
