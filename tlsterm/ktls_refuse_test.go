package tlsterm

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// serveTLS runs fn on the server side of the next connection on ln,
// handshaken over a RecordConn, and reports its error on the channel.
func serveTLS(ln net.Listener, cfg *tls.Config, fn func(rc *RecordConn, tc *tls.Conn) error) <-chan error {
	done := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(testTimeout))
		rc := NewRecordConn(raw)
		tc := tls.Server(rc, cfg)
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		done <- fn(rc, tc)
	}()
	return done
}

// TestPrepareAfterRead: a caller may read the first bytes through the
// *tls.Conn (sluice's peek at the request head) and still hand over, as
// long as it took all that crypto/tls decrypted: the kernel then goes on
// from the next client record. A read that left bytes in crypto/tls's
// buffer sends the connection down the userspace path.
func TestPrepareAfterRead(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, whole := range []bool{true, false} {
			name := VersionName(version) + map[bool]string{true: "/whole_record", false: "/part_of_record"}[whole]
			t.Run(name, func(t *testing.T) {
				cert, pool := testCert(t)
				ln := listen(t)
				var keys *KernelKeys
				done := serveTLS(ln, WithKeyLog(&tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: version}), func(rc *RecordConn, tc *tls.Conn) error {
					buf := make([]byte, 1)
					if whole {
						buf = make([]byte, 1<<14)
					}
					n, err := tc.Read(buf)
					if err != nil {
						return err
					}
					keys, err = rc.Prepare(tc.ConnectionState(), int64(n))
					t.Logf("Prepare after reading %d bytes: %v", n, err)
					if whole {
						if err != nil {
							return err
						}
						// The client's next record opens under the kernel's
						// RX keys at the sequence number Prepare counted.
						rec, err := readRecord(rc.Conn)
						if err != nil {
							return err
						}
						sim, err := newSim(keys.RX)
						if err != nil {
							return err
						}
						typ, pt, err := sim.open(rec)
						if err != nil || typ != recordTypeApplicationData || string(pt) != "world" {
							return fmt.Errorf("next client record: type %d %q, %v", typ, pt, err)
						}
						return nil
					}
					if FallbackReason(err) != FallbackBuffered {
						return errors.Join(fmt.Errorf("want reason %q, got %q", FallbackBuffered, FallbackReason(err)), err)
					}
					// The userspace path still works: rc passes through.
					_, err = tc.Write([]byte("ok"))
					return err
				})
				c := tls.Client(dial(t, ln), &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: version})
				if _, err := c.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				if whole {
					if _, err := c.Write([]byte("world")); err != nil {
						t.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if whole {
					t.Logf("RX seq %d after one record read", keys.RX.Seq)
					if want := uint64(1); version == tls.VersionTLS13 && keys.RX.Seq != want {
						t.Fatalf("RX seq %d, want %d", keys.RX.Seq, want)
					}
					return
				}
				if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
					t.Fatalf("client read after the fallback: %v", err)
				}
			})
		}
	}
}

// TestHandOverResumption: WithKeyLog keeps session resumption working. A
// resumed TLS 1.3 session is handed over; a resumed TLS 1.2 one cannot be,
// because crypto/tls logs no master secret for it.
func TestHandOverResumption(t *testing.T) {
	for _, tc := range []struct {
		version uint16
		wantErr bool
	}{
		{tls.VersionTLS13, false},
		{tls.VersionTLS12, true},
	} {
		t.Run(VersionName(tc.version), func(t *testing.T) {
			cert, pool := testCert(t)
			ln := listen(t)
			srv := WithKeyLog(&tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tc.version})
			cli := &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tc.version, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			for i := range 2 {
				var keys *KernelKeys
				done := serveTLS(ln, srv, func(rc *RecordConn, c *tls.Conn) error {
					var err error
					keys, err = rc.Prepare(c.ConnectionState(), 0)
					if i == 1 && tc.wantErr {
						t.Logf("Prepare on the resumed session: %v", err)
						if !errors.Is(err, ErrNoHandOver) {
							return errors.Join(errors.New("want ErrNoHandOver"), err)
						}
						return nil
					}
					if err != nil {
						return err
					}
					// The ticket reaches the client before this record.
					sim, err := newSim(keys.TX)
					if err != nil {
						return err
					}
					_, err = rc.Conn.Write(sim.seal(recordTypeApplicationData, []byte("x")))
					return err
				})
				c := tls.Client(dial(t, ln), cli)
				if err := c.Handshake(); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if got := c.ConnectionState().DidResume; got != (i == 1) {
					t.Fatalf("connection %d: resumed %v", i, got)
				}
				if i == 1 && tc.wantErr {
					continue
				}
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatalf("connection %d: client read of the sealed record: %v", i, err)
				}
				t.Logf("connection %d (resumed %v): TX seq %d, RX seq %d", i, i == 1, keys.TX.Seq, keys.RX.Seq)
			}
		})
	}
}
