//go:build linux

package tlsterm

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"go.uber.org/goleak"
)

// TestKernelTLSHandOver hands real connections to the real kernel: after a
// real handshake and one record written by crypto/tls, the server installs
// the keys Prepare derived and from then on moves only plaintext, with
// plain write(2) and read(2) on the raw socket, both directions at once.
// The peer is crypto/tls or openssl s_client; what each side received is
// checked by SHA-256 against what the other sent, so the kernel accepting
// the client's records and the client accepting the kernel's prove the
// keys and both sequence numbers. It ends with close_notify both ways: the
// client's as the kernel reports it to read(2), the server's sent through
// the kernel with a cmsg.
//
// It skips where the kernel has no TLS ULP (.ci/ktls-vm.sh runs it).
func TestKernelTLSHandOver(t *testing.T) {
	if err := ProbeKernelTLS(); err != nil {
		t.Skip(err)
	}
	existing := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, existing) })
	for _, tc := range kernelCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noAES && os.Getenv(childEnv) == "" {
				runChild(t, "^TestKernelTLSHandOver$/^"+tc.name+"$", "GODEBUG=cpu.aes=off")
				return
			}
			testKernelHandOver(t, tc)
		})
	}
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("no openssl: its cases are not run")
		return
	}
	for _, suite := range tls13Suites {
		t.Run("openssl-"+tls.CipherSuiteName(suite), func(t *testing.T) {
			testKernelOpenSSL(t, bin, suite)
		})
	}
}

// Go negotiates TLS 1.3 AES-256-GCM only with other peers: the openssl
// cases cover it. resume runs a second connection that resumes the first's
// session (TLS 1.3 only: resumed TLS 1.2 sessions stay in userspace).
var kernelCases = []handOverCase{
	{name: "tls13-aes128-tickets", version: tls.VersionTLS13, want: tls.TLS_AES_128_GCM_SHA256, tickets: true},
	{name: "tls13-aes128-no-tickets", version: tls.VersionTLS13, want: tls.TLS_AES_128_GCM_SHA256},
	{name: "tls13-aes128-resumed", version: tls.VersionTLS13, want: tls.TLS_AES_128_GCM_SHA256, tickets: true, resume: true},
	{name: "tls13-chacha20-tickets", version: tls.VersionTLS13, want: tls.TLS_CHACHA20_POLY1305_SHA256, tickets: true, noAES: true},
	{name: "tls13-chacha20-no-tickets", version: tls.VersionTLS13, want: tls.TLS_CHACHA20_POLY1305_SHA256, noAES: true},
	{name: "tls12-aes128-tickets", version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, want: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tickets: true},
	{name: "tls12-aes128-no-tickets", version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, want: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{name: "tls12-aes256-tickets", version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, want: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tickets: true},
	{name: "tls12-aes256-no-tickets", version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, want: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{name: "tls12-chacha20-tickets", version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, want: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tickets: true},
	{name: "tls12-chacha20-no-tickets", version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, want: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
}

// The sizes of the plaintext writes after the hand-over. The server's go
// to write(2) one each, so the kernel must cut the larger ones into
// records of at most 16 KiB; the client's go to tls.Conn.Write.
var (
	serverWrites = []int{1, 1000, 16383, 16384, 16385, 70000, 300000}
	clientWrites = []int{7, 16384, 16401, 50000, 200000}
)

const (
	// maxCiphertext13 is the largest TLS 1.3 record body (RFC 8446 §5.2).
	maxCiphertext13 = 1<<14 + 256
)

var closeNotify = []byte{1, 0} // alert level warning, close_notify

func testKernelHandOver(t *testing.T, tc handOverCase) {
	srv, cli := tc.configs(t)
	ln := listen(t)
	cfg := WithKeyLog(srv) // one for both connections, so the second resumes
	conns := 1
	if tc.resume {
		conns = 2
	}
	for i := range conns {
		prepared := make(chan serverResult, 1)
		go func() { prepared <- prepareHandOver(ln, cfg) }()
		conn := dial(t, ln)
		wire := &wireRecorder{Conn: conn}
		c := tls.Client(wire, cli)
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		res := <-prepared
		raw := kernelServer(t, res, tc.want)
		if got := c.ConnectionState().DidResume; got != (i == 1) {
			t.Fatalf("connection %d: resumed %v", i, got)
		}

		toServer := payload(uint64(2*i), clientWrites)
		toClient := payload(uint64(2*i+1), serverWrites)
		ended := make(chan serverEnd, 1)
		go serveKernel(raw, toClient, len(bytes.Join(toServer, nil)), ended)
		cliEnd := make(chan error, 1)
		go clientWriter(c, conn.(*net.TCPConn), toServer, cliEnd)
		got := sha256.New()
		n, readErr := io.Copy(got, c)
		writeErr := <-cliEnd
		end := <-ended

		// Both directions, byte for byte.
		if readErr != nil {
			t.Errorf("client read after %d bytes: %v (want the kernel's close_notify)", n, readErr)
		}
		if writeErr != nil {
			t.Errorf("client write: %v", writeErr)
		}
		if end.err != nil {
			t.Errorf("server: %v", end.err)
		}
		want := append(bytes.Clone(userspaceMsg), bytes.Join(toClient, nil)...)
		if sum := got.Sum(nil); int(n) != len(want) || !bytes.Equal(sum, sha256Sum(want)) {
			t.Errorf("client received %d bytes sha256 %x, server sent %d (with crypto/tls's record) sha256 %x", n, sum, len(want), sha256Sum(want))
		}
		sent := bytes.Join(toServer, nil)
		if end.n != len(sent) || !bytes.Equal(end.sum, sha256Sum(sent)) {
			t.Errorf("server read(2) %d bytes sha256 %x, client sent %d sha256 %x", end.n, end.sum, len(sent), sha256Sum(sent))
		}
		checkCloseNotify(t, end)

		// The kernel cut the large writes into full-size records.
		fromServer, _ := wire.captured()
		recs := splitRecords(t, fromServer)
		largest := 0
		for _, r := range recs {
			largest = max(largest, len(r)-recordHeaderLen)
		}
		t.Logf("connection %d: %s %s, TX seq %d, RX seq %d; client got %d records, largest body %d bytes; server read(2) %d bytes",
			i, VersionName(res.cs.Version), tls.CipherSuiteName(res.cs.CipherSuite), res.keys.TX.Seq, res.keys.RX.Seq, len(recs), largest, end.n)
		if largest <= 1<<14 || largest > maxCiphertext13 {
			t.Errorf("largest record body %d bytes, want a full record: over %d and at most %d", largest, 1<<14, maxCiphertext13)
		}
		if res.cs.Version == tls.VersionTLS12 && res.keys.TX.CipherType != tlsCipherChaCha20Poly1305 {
			checkExplicitNonces(t, recs)
		}
	}
}

// testKernelOpenSSL is the same with openssl s_client as the client, for
// the TLS 1.3 suites. s_client's stdin goes to the server, what the server
// sends comes out on its stdout, and it exits when it reads close_notify.
func testKernelOpenSSL(t *testing.T, bin string, suite uint16) {
	cert, _ := testCert(t)
	ln := listen(t)
	prepared := make(chan serverResult, 1)
	go func() {
		prepared <- prepareHandOver(ln, WithKeyLog(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}))
	}()
	// -nocommands: a line of input starting with K would be a KeyUpdate.
	s := startSClient(t, bin, ln.Addr().String(), suite, "-nocommands")
	res := <-prepared
	if res.err != nil {
		t.Logf("openssl: %s", s.stderr.Bytes())
	}
	raw := kernelServer(t, res, suite)

	// Text lines of hex: s_client is a terminal program.
	toServer := []byte(hex.Dump(bytes.Join(payload(10, []int{40000}), nil)))
	toClient := payload(11, serverWrites)
	ended := make(chan serverEnd, 1)
	go serveKernel(raw, toClient, len(toServer), ended)
	stdinDone := make(chan error, 1)
	go func() {
		_, err := s.stdin.Write(toServer)
		stdinDone <- err
	}()
	got := sha256.New()
	n, readErr := io.Copy(got, s.stdout)
	waitErr := s.cmd.Wait()
	end := <-ended
	if err := <-stdinDone; err != nil {
		t.Errorf("openssl stdin: %v", err)
	}
	if readErr != nil || waitErr != nil {
		t.Errorf("openssl: stdout %v, exit %v; stderr: %s", readErr, waitErr, s.stderr.Bytes())
	}
	if end.err != nil {
		t.Errorf("server: %v", end.err)
	}
	want := append(bytes.Clone(userspaceMsg), bytes.Join(toClient, nil)...)
	if sum := got.Sum(nil); int(n) != len(want) || !bytes.Equal(sum, sha256Sum(want)) {
		t.Errorf("openssl printed %d bytes sha256 %x, server sent %d (with crypto/tls's record) sha256 %x", n, sum, len(want), sha256Sum(want))
	}
	if end.n != len(toServer) || !bytes.Equal(end.sum, sha256Sum(toServer)) {
		t.Errorf("server read(2) %d bytes sha256 %x, openssl sent %d sha256 %x", end.n, end.sum, len(toServer), sha256Sum(toServer))
	}
	checkCloseNotify(t, end)
	t.Logf("TX seq %d, RX seq %d; openssl printed %d bytes, server read(2) %d", res.keys.TX.Seq, res.keys.RX.Seq, n, end.n)
}

// kernelServer checks the server's side of the handshake and installs its
// keys in the kernel, returning the raw socket, which now speaks plaintext
// to the application and TLS to the peer. The *tls.Conn is never used
// again.
func kernelServer(t *testing.T, res serverResult, suite uint16) *net.TCPConn {
	t.Helper()
	if res.raw != nil {
		t.Cleanup(func() { res.raw.Close() })
	}
	if res.err != nil {
		t.Fatalf("server: %v", res.err)
	}
	if res.cs.CipherSuite != suite {
		t.Fatalf("negotiated %s, want %s", tls.CipherSuiteName(res.cs.CipherSuite), tls.CipherSuiteName(suite))
	}
	raw := res.raw.(*net.TCPConn)
	if err := InstallKernelTLS(raw, res.keys); err != nil {
		t.Fatal(err)
	}
	return raw
}

// serverEnd is what the server saw through the kernel.
type serverEnd struct {
	n   int    // plaintext bytes read(2) returned
	sum []byte // and their SHA-256
	// readErr ended the reads: the peer's close_notify. againErr is a
	// second read(2).
	readErr, againErr error
	// recvmsg after readErr: the record type in its cmsg and the payload.
	cmsgType byte
	record   []byte
	recvErr  error
	// afterErr is what the read after that returned.
	afterErr error
	err      error // writing, or sending close_notify
}

// serveKernel is the server after the hand-over: it writes out with
// write(2), one call each, while it reads with read(2) until an error,
// then reads the record the error stopped at with recvmsg, and reads once
// more. Once it has read inLen bytes and written everything, it sends
// close_notify through the kernel and a FIN.
func serveKernel(raw *net.TCPConn, out [][]byte, inLen int, done chan<- serverEnd) {
	var end serverEnd
	defer func() { done <- end }()
	readAll := make(chan struct{})
	wrote := make(chan error, 1)
	go serverWriter(raw, out, readAll, wrote)

	h := sha256.New()
	buf := make([]byte, 64<<10)
	for {
		n, err := raw.Read(buf)
		h.Write(buf[:n])
		end.n += n
		if end.n >= inLen && readAll != nil {
			close(readAll)
			readAll = nil
		}
		if err != nil {
			end.readErr = err
			break
		}
	}
	if readAll != nil {
		close(readAll)
	}
	end.sum = h.Sum(nil)
	_, end.againErr = raw.Read(buf)
	end.cmsgType, end.record, end.recvErr = recvRawRecord(raw)
	_, end.afterErr = raw.Read(buf)
	end.err = <-wrote
}

// serverWriter writes each of out with one Write, which is write(2) on the
// kTLS socket, waits until readAll is closed (a peer such as s_client
// stops reading at close_notify), then sends close_notify and a FIN.
//
// On an error it closes raw, so that the reader and the peer stop at once:
// after a record fails to decrypt (wrong RX keys or seq) the kernel fails
// every later read and write on the socket with EBADMSG but tells the
// peer nothing, which would then wait for its deadline.
func serverWriter(raw *net.TCPConn, out [][]byte, readAll <-chan struct{}, done chan<- error) {
	err := writeAll(raw, out, readAll)
	if err != nil {
		raw.Close()
	}
	done <- err
}

func writeAll(raw *net.TCPConn, out [][]byte, readAll <-chan struct{}) error {
	for _, b := range out {
		if _, err := raw.Write(b); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	<-readAll
	if err := sendRawRecord(raw, recordTypeAlert, closeNotify); err != nil {
		return fmt.Errorf("send close_notify: %w", err)
	}
	return raw.CloseWrite()
}

// clientWriter is the Go client's sending half: each of out with one
// Write, then close_notify and a FIN.
func clientWriter(c *tls.Conn, tcp *net.TCPConn, out [][]byte, done chan<- error) {
	for _, b := range out {
		if _, err := c.Write(b); err != nil {
			done <- err
			return
		}
	}
	if err := c.CloseWrite(); err != nil {
		done <- fmt.Errorf("close_notify: %w", err)
		return
	}
	done <- tcp.CloseWrite()
}

// checkCloseNotify asserts what the kernel (6.1 and 7.3 alike) does with
// the peer's close_notify followed by its FIN. read(2) returns all the
// application data before the alert, then fails with EIO, not EOF, and
// keeps failing with EIO: the alert record stays queued, so a loop that
// retries the read spins. recvmsg with room for a cmsg takes it, with
// TLS_GET_RECORD_TYPE 21 (alert) and the plaintext 01 00. Only then does
// read(2) reach the FIN and return 0, which Go reports as io.EOF.
func checkCloseNotify(t *testing.T, end serverEnd) {
	t.Helper()
	t.Logf("at close_notify: read %v; read again %v; recvmsg type %d % x %v; then read %v", end.readErr, end.againErr, end.cmsgType, end.record, end.recvErr, end.afterErr)
	if !errors.Is(end.readErr, syscall.EIO) || !errors.Is(end.againErr, syscall.EIO) {
		t.Errorf("read(2) at the peer's close_notify: %v, then %v; want EIO twice", end.readErr, end.againErr)
	}
	if end.recvErr != nil || end.cmsgType != recordTypeAlert || !bytes.Equal(end.record, closeNotify) {
		t.Errorf("recvmsg after EIO: record type %d % x, %v; want the close_notify alert", end.cmsgType, end.record, end.recvErr)
	}
	if end.afterErr != io.EOF {
		t.Errorf("read(2) after the alert: %v, want EOF (the peer's FIN)", end.afterErr)
	}
}

// checkExplicitNonces: in TLS 1.2 AES-GCM each record after the server's
// ChangeCipherSpec starts with its 8-byte explicit nonce, which crypto/tls
// sets to the sequence number and the kernel takes from CryptoInfo.IV and
// increments. Both must continue one count: a repeat under the same key
// would be GCM nonce reuse, which no peer checks.
func checkExplicitNonces(t *testing.T, recs [][]byte) {
	t.Helper()
	next := -1
	for _, r := range recs {
		switch {
		case r[0] == recordTypeChangeCipherSpec:
			next = 0
		case next >= 0:
			if got := binary.BigEndian.Uint64(r[recordHeaderLen:]); got != uint64(next) {
				t.Fatalf("server record %d after ChangeCipherSpec has explicit nonce %d", next, got)
			}
			next++
		}
	}
	if next <= 0 {
		t.Fatal("no records after ChangeCipherSpec")
	}
	t.Logf("explicit nonces 0 to %d, one per record", next-1)
}

// sendRawRecord sends b as one record of type typ through raw's kernel TLS.
func sendRawRecord(raw *net.TCPConn, typ byte, b []byte) error {
	rc, err := raw.SyscallConn()
	if err != nil {
		return err
	}
	return sendRecord(rc, typ, b)
}

// recvRawRecord waits for one record on raw's kernel TLS and returns its
// type and plaintext.
func recvRawRecord(raw *net.TCPConn) (byte, []byte, error) {
	rc, err := raw.SyscallConn()
	if err != nil {
		return 0, nil, err
	}
	buf := make([]byte, 1<<14)
	typ, n, err := recvRecord(rc, buf, true)
	return typ, buf[:n], err
}

// payload is one pseudo-random buffer of each size, the same for a seed.
func payload(seed uint64, sizes []int) [][]byte {
	r := rand.NewChaCha8([32]byte{byte(seed)})
	out := make([][]byte, len(sizes))
	for i, n := range sizes {
		out[i] = make([]byte, n)
		r.Read(out[i])
	}
	return out
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// TestKernelTLSEmptyRecord pins what the kernel does with a zero-length
// application data record, which TLS allows a client to send: splice(2)
// from the kTLS socket moves nothing and returns 0, as at a FIN, while the
// socket is still established, and the next record's bytes follow. The
// relay tells the two apart by the TCP state (splice's readEnded).
func TestKernelTLSEmptyRecord(t *testing.T) {
	if err := ProbeKernelTLS(); err != nil {
		t.Skipf("no kernel TLS: %v", err)
	}
	cert, pool := testCert(t)
	ln := listen(t)
	prepared := make(chan serverResult, 1)
	go func() {
		prepared <- prepareHandOver(ln, WithKeyLog(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}))
	}()
	conn := dial(t, ln)
	c := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	res := <-prepared
	raw := kernelServer(t, res, res.cs.CipherSuite)
	// The client's records, sealed with its traffic key as crypto/tls
	// would, past crypto/tls: an empty one, then "hi".
	sim := newKernelSim(t, res.keys.RX)
	if _, err := conn.Write(append(sim.seal(recordTypeApplicationData, nil), sim.seal(recordTypeApplicationData, []byte("hi"))...)); err != nil {
		t.Fatal(err)
	}
	rc, err := raw.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var got []int64
	var state uint8
	for len(got) < 4 {
		var n int64
		var serr error
		if err := rc.Read(func(fd uintptr) bool {
			n, serr = unix.Splice(int(fd), nil, fds[1], nil, 1<<16, unix.SPLICE_F_NONBLOCK)
			return serr != unix.EAGAIN
		}); err != nil {
			t.Fatal(err)
		}
		if serr != nil {
			t.Fatalf("splice: %v after %v", serr, got)
		}
		got = append(got, n)
		if n == 0 {
			rc.Control(func(fd uintptr) {
				info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
				if err == nil {
					state = info.State
				}
			})
		}
		if n == 2 {
			break
		}
	}
	t.Logf("splice returned %v; TCP state at the 0: %d (established %d)", got, state, unix.BPF_TCP_ESTABLISHED)
	if got[len(got)-1] != 2 {
		t.Fatalf("splice returned %v, want the 2 bytes of the second record last", got)
	}
	if len(got) > 1 && state != unix.BPF_TCP_ESTABLISHED {
		t.Fatalf("splice returned 0 for the empty record with the socket in state %d, not established", state)
	}
}
