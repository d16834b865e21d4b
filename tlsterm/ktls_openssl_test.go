package tlsterm

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"os/exec"
	"testing"
)

// TestHandOverOpenSSL repeats the hand-over with openssl s_client as the
// client, an implementation independent of crypto/tls, for the TLS 1.3
// suites; only it can make a Go server choose TLS_AES_256_GCM_SHA384.
func TestHandOverOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			cert, _ := testCert(t)
			ln := listen(t)
			done := make(chan serverResult, 1)
			go serveHandOver(ln, WithKeyLog(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}), 0, 1, done)

			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", ln.Addr().String(), "-servername", "localhost",
				"-tls1_3", "-ciphersuites", tls.CipherSuiteName(suite), "-quiet")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				stdin.Close()
				cancel()
				cmd.Wait()
			}()
			msg := []byte("from openssl\n")
			if _, err := stdin.Write(msg); err != nil {
				t.Fatal(err)
			}
			want := bytes.Join(append([][]byte{userspaceMsg}, kernelMsgs...), nil)
			got := make([]byte, len(want))
			_, readErr := io.ReadFull(stdout, got)
			res := <-done
			if res.raw != nil {
				defer res.raw.Close()
			}
			if res.err != nil {
				t.Fatalf("server: %v; openssl: %s", res.err, stderr.Bytes())
			}
			if readErr != nil || !bytes.Equal(got, want) {
				t.Fatalf("openssl printed %q, %v; want %q; stderr: %s", got, readErr, want, stderr.Bytes())
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
