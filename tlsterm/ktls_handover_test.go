package tlsterm

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"hash"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// These tests run real handshakes over loopback, then play the kernel's
// part with the CryptoInfo that Prepare derived (kernelSim): the client
// must read the records sealed with TX as the next ones after crypto/tls's
// own, and the client's records must open with RX. The wire capture must
// show exactly TX.Seq / RX.Seq records under the traffic keys before the
// hand-over.

const testTimeout = 10 * time.Second

var (
	userspaceMsg = []byte("written by crypto/tls before the hand-over")
	kernelMsgs   = [][]byte{[]byte("sealed as the kernel would, one"), []byte("and two")}
	clientMsgs   = [][]byte{[]byte("client record one"), []byte("client record two, sent at once")}
)

type handOverCase struct {
	name      string
	version   uint16
	suite     uint16 // TLS 1.2: the only suite the server allows
	want      uint16 // the suite that must be negotiated
	tickets   bool   // the client keeps a session cache, so TLS 1.3 servers send tickets
	noAES     bool   // run in a child with GODEBUG=cpu.aes=off: Go then prefers ChaCha20 in TLS 1.3
	seqOffset int    // added to TX.Seq: a negative control when not 0
	resume    bool   // TestKernelTLSHandOver: a second connection resumes the first's session
}

var handOverCases = []handOverCase{
	{name: "tls13-aes128-tickets", version: tls.VersionTLS13, want: tls.TLS_AES_128_GCM_SHA256, tickets: true},
	{name: "tls13-aes128-no-tickets", version: tls.VersionTLS13, want: tls.TLS_AES_128_GCM_SHA256},
	{name: "tls13-chacha20", version: tls.VersionTLS13, want: tls.TLS_CHACHA20_POLY1305_SHA256, tickets: true, noAES: true},
	{name: "tls12-aes128", version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, want: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tickets: true},
	{name: "tls12-aes256", version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, want: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{name: "tls12-chacha20", version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, want: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	// Negative control: one record too few and the client must refuse.
	{name: "tls13-tx-seq-one-low", version: tls.VersionTLS13, want: tls.TLS_AES_128_GCM_SHA256, tickets: true, seqOffset: -1},
}

// TLS 1.3 with AES-256-GCM cannot be negotiated between Go peers (Go
// always prefers AES-128); TestHandOverOpenSSL covers it.

const childEnv = "SLUICE_KTLS_CHILD"

func TestHandOver(t *testing.T) {
	// Registered first, so it runs after the subtests have closed their
	// conns: every server goroutine must have returned.
	existing := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, existing) })
	for _, tc := range handOverCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noAES && os.Getenv(childEnv) == "" {
				runChild(t, "^TestHandOver$/^"+tc.name+"$", "GODEBUG=cpu.aes=off")
				return
			}
			testHandOver(t, tc)
		})
	}
}

// runChild runs the tests matching run in a child of this test binary with
// env added, since GODEBUG=cpu.* only takes effect at start-up.
func runChild(t *testing.T, run string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.v", "-test.count=1")
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		t.Log("child: " + line)
	}
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS") || strings.Contains(string(out), "--- SKIP") {
		t.Fatal("child did not run the test")
	}
}

// configs are the server's and the client's TLS configurations of tc:
// its version, its suite (TLS 1.2) and, with tickets, a session cache.
func (tc handOverCase) configs(t *testing.T) (srv, cli *tls.Config) {
	cert, pool := testCert(t)
	srv = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tc.version, MaxVersion: tc.version}
	if tc.suite != 0 {
		srv.CipherSuites = []uint16{tc.suite}
	}
	cli = &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tc.version, MaxVersion: tc.version}
	if tc.tickets {
		cli.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	}
	return srv, cli
}

func testHandOver(t *testing.T, tc handOverCase) {
	srv, cli := tc.configs(t)
	ln := listen(t)
	done := make(chan serverResult, 1)
	go serveHandOver(ln, WithKeyLog(srv), tc.seqOffset, len(clientMsgs), done)

	conn := dial(t, ln)
	c := tls.Client(conn, cli)
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	// Written at once, so that they may arrive with the Finished: the
	// RecordConn must keep them out of crypto/tls's buffer.
	for _, m := range clientMsgs {
		if _, err := c.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	want := bytes.Join(append([][]byte{userspaceMsg}, kernelMsgs...), nil)
	got := make([]byte, len(want))
	_, readErr := io.ReadFull(c, got)

	res := <-done
	t.Cleanup(func() { res.raw.Close() })
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.cs.CipherSuite != tc.want {
		t.Fatalf("negotiated %s, want %s", tls.CipherSuiteName(res.cs.CipherSuite), tls.CipherSuiteName(tc.want))
	}
	k := res.keys
	t.Logf("%s %s: TX seq %d, RX seq %d, TX crypto_info % x", VersionName(res.cs.Version), tls.CipherSuiteName(res.cs.CipherSuite), k.TX.Seq, k.RX.Seq, k.TX.Marshal())
	if tc.seqOffset != 0 {
		if readErr == nil || !strings.Contains(readErr.Error(), "bad record MAC") {
			t.Fatalf("client read with TX seq %d: %v, want bad record MAC", int(k.TX.Seq)+tc.seqOffset, readErr)
		}
		return
	}
	if readErr != nil {
		t.Fatalf("client read: %v", readErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("client read %q, want %q", got, want)
	}
	for i, m := range res.fromClient {
		if !bytes.Equal(m, clientMsgs[i]) {
			t.Errorf("client record %d opened as %q, want %q", i, m, clientMsgs[i])
		}
	}
	if tc.version == tls.VersionTLS12 {
		if k.TX.Seq != 2 || k.RX.Seq != 1 {
			t.Errorf("TLS 1.2 seqs TX %d RX %d, want 2 (Finished, one write) and 1 (Finished)", k.TX.Seq, k.RX.Seq)
		}
		if tc.want != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 && !bytes.Equal(k.TX.IV, []byte{0, 0, 0, 0, 0, 0, 0, byte(k.TX.Seq)}) {
			t.Errorf("TLS 1.2 GCM TX iv % x: the explicit nonce must continue from the sequence number", k.TX.IV)
		}
		// The PRF and the server random again, through crypto/tls's
		// exporter (RFC 5705), which uses the same PRF and randoms.
		ekm, err := res.cs.ExportKeyingMaterial("EXPERIMENTAL sluice", nil, 32)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ekm, res.ekm) {
			t.Errorf("PRF exporter % x, crypto/tls % x", res.ekm, ekm)
		}
	}
	if tc.version == tls.VersionTLS13 {
		wantTX := uint64(1) // the write
		if tc.tickets {
			wantTX++ // one NewSessionTicket
		}
		if k.TX.Seq != wantTX || k.RX.Seq != 0 {
			t.Errorf("TLS 1.3 seqs TX %d RX %d, want %d and 0", k.TX.Seq, k.RX.Seq, wantTX)
		}
	}

	// The capture, record by record.
	fromClient, toClient := res.wire.captured()
	tx := openCaptured(t, toClient, k.TX, len(kernelMsgs))
	for i, o := range tx[:k.TX.Seq-1] {
		if o.typ != recordTypeHandshake {
			t.Errorf("server record %d under the traffic key has type %d, want a handshake message", i, o.typ)
		}
		t.Logf("server record %d before the hand-over: handshake type %d (%d bytes)", i, o.pt[0], len(o.pt))
	}
	if o := tx[k.TX.Seq-1]; o.typ != recordTypeApplicationData || !bytes.Equal(o.pt, userspaceMsg) {
		t.Errorf("server record %d: type %d %q, want crypto/tls's write", k.TX.Seq-1, o.typ, o.pt)
	}
	rx := openCaptured(t, fromClient, k.RX, len(clientMsgs))
	for i, o := range rx {
		if uint64(i) < k.RX.Seq {
			if o.typ != recordTypeHandshake {
				t.Errorf("client record %d before the hand-over has type %d, want its Finished", i, o.typ)
			}
			continue
		}
		if !bytes.Equal(o.pt, clientMsgs[uint64(i)-k.RX.Seq]) {
			t.Errorf("client record %d: %q", i, o.pt)
		}
	}
}

type serverResult struct {
	raw        net.Conn
	wire       *wireRecorder
	cs         tls.ConnectionState
	keys       *KernelKeys
	fromClient [][]byte
	ekm        []byte // TLS 1.2: the exporter computed with prf12
	err        error
}

// serveHandOver is the server: prepareHandOver, then the kernel's part
// played by kernelSim on the raw socket.
func serveHandOver(ln net.Listener, cfg *tls.Config, seqOffset, clientRecords int, done chan<- serverResult) {
	res := prepareHandOver(ln, cfg)
	defer func() { done <- res }()
	if res.err != nil {
		return
	}
	txInfo := res.keys.TX
	txInfo.Seq = uint64(int(txInfo.Seq) + seqOffset)
	tx, err := newSim(txInfo)
	if err != nil {
		res.err = err
		return
	}
	for _, m := range kernelMsgs {
		if _, res.err = res.wire.Write(tx.seal(recordTypeApplicationData, m)); res.err != nil {
			return
		}
	}
	rx, err := newSim(res.keys.RX)
	if err != nil {
		res.err = err
		return
	}
	for range clientRecords {
		rec, err := readRecord(res.wire)
		if err != nil {
			res.err = err
			return
		}
		typ, pt, err := rx.open(rec)
		if err != nil || typ != recordTypeApplicationData {
			res.err = errors.Join(errors.New("client record does not open with RX"), err)
			return
		}
		res.fromClient = append(res.fromClient, pt)
	}
}

// prepareHandOver accepts the next connection on ln and runs the server up
// to the hand-over: the handshake over a RecordConn, one write by
// crypto/tls, Prepare. res.raw is set whenever a connection was accepted.
func prepareHandOver(ln net.Listener, cfg *tls.Config) (res serverResult) {
	raw, err := ln.Accept()
	if err != nil {
		res.err = err
		return res
	}
	res.raw = raw
	raw.SetDeadline(time.Now().Add(testTimeout))
	res.wire = &wireRecorder{Conn: raw}
	rc := NewRecordConn(res.wire)
	tc := tls.Server(rc, cfg)
	if res.err = tc.Handshake(); res.err != nil {
		return res
	}
	if _, res.err = tc.Write(userspaceMsg); res.err != nil {
		return res
	}
	res.cs = tc.ConnectionState()
	if res.cs.Version == tls.VersionTLS12 {
		s, _ := rc.log.secrets()
		sr, _ := serverRandom(rc.out.records)
		res.ekm = prf12(suiteHash(res.cs), s.master, "EXPERIMENTAL sluice", append(bytes.Clone(s.clientRandom), sr...), 32)
	}
	res.keys, res.err = rc.Prepare(res.cs, 0)
	return res
}

func suiteHash(cs tls.ConnectionState) func() hash.Hash {
	p, _ := suiteFor(cs.Version, cs.CipherSuite)
	return p.hash
}

// testCert is a self-signed certificate for localhost and a pool that
// trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, err := SelfSigned([]string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return *cert, pool
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dial(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}
