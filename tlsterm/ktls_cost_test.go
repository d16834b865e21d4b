package tlsterm

import (
	"crypto/rand"
	"crypto/tls"
	"net"
	"testing"
)

// BenchmarkRecordCrypto is the cost of the record layer's cryptography
// alone: sealing and opening full 16 KiB records with each AEAD the kernel
// takes. A terminated relay whose record layer is in the kernel pays the
// splice relay's cost (S6a's CPU-s per GiB) plus this, as the kernel's
// AES-GCM and ChaCha20 use the same instructions Go's do; the s/GiB metric
// makes the two add up (bench/results/ktls.md).
//
//	go test -run '^$' -bench RecordCrypto ./tlsterm
func BenchmarkRecordCrypto(b *testing.B) {
	for _, tc := range []struct {
		name       string
		cipherType uint16
		keyLen     int
	}{
		{"aes128gcm", tlsCipherAESGCM128, 16},
		{"aes256gcm", tlsCipherAESGCM256, 32},
		{"chacha20poly1305", tlsCipherChaCha20Poly1305, 32},
	} {
		key := make([]byte, tc.keyLen)
		rand.Read(key)
		aead, err := recordAEAD(tc.cipherType, key)
		if err != nil {
			b.Fatal(err)
		}
		const record = 16 << 10
		plain := make([]byte, record)
		nonce := make([]byte, aead.NonceSize())
		aad := []byte{23, 3, 3, 0x40, 0x11}
		sealed := aead.Seal(nil, nonce, plain, aad)
		for _, op := range []string{"seal", "open"} {
			b.Run(tc.name+"/"+op, func(b *testing.B) {
				b.SetBytes(record)
				out := make([]byte, 0, record+aead.Overhead())
				for b.Loop() {
					if op == "seal" {
						out = aead.Seal(out[:0], nonce, plain, aad)
					} else if _, err := aead.Open(out[:0], nonce, sealed, aad); err != nil {
						b.Fatal(err)
					}
				}
				perGiB := b.Elapsed().Seconds() / float64(b.N) * float64(1<<30) / record
				b.ReportMetric(perGiB, "s/GiB")
			})
		}
	}
}

// BenchmarkHandshakeHandOver is what getting ready for the kernel costs a
// full TLS 1.3 handshake over loopback (client and server in this
// process): a key log per connection (a config clone per handshake), reads
// bounded to a record (two per record), the copies of the records, and
// Prepare's counting and key derivation, against a plain handshake. It
// needs no kernel TLS: nothing is installed.
//
//	go test -run '^$' -bench HandshakeHandOver -count 5 ./tlsterm
func BenchmarkHandshakeHandOver(b *testing.B) {
	cert, pool := testCert(b)
	base := &tls.Config{Certificates: []tls.Certificate{cert}}
	cli := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	for _, prepare := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "prepared"}[prepare]
		b.Run(name, func(b *testing.B) {
			cfg := base
			if prepare {
				cfg = WithKeyLog(base)
			}
			ln := listen(b)
			for b.Loop() {
				errc := make(chan error, 1)
				go func() {
					c, err := net.Dial("tcp", ln.Addr().String())
					if err == nil {
						tc := tls.Client(c, cli)
						err = tc.Handshake()
						c.Close()
					}
					errc <- err
				}()
				raw, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				var under net.Conn = raw
				var rc *RecordConn
				if prepare {
					rc = NewRecordConn(raw)
					under = rc
				}
				tc := tls.Server(under, cfg)
				if err := tc.Handshake(); err != nil {
					b.Fatal(err)
				}
				if prepare {
					if _, err := rc.Prepare(tc.ConnectionState(), 0); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				raw.Close()
			}
		})
	}
}
