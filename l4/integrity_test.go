package l4

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// streamOrder is what a test client asks of the integrity backend: send
// size bytes of the stream seeded with seed (down) or read them (up), and,
// if cut is non-zero, reset the connection after cut bytes.
type streamOrder struct {
	up        bool
	seed      uint64
	size, cut int64
}

func (o streamOrder) marshal() []byte {
	b := make([]byte, 25)
	if o.up {
		b[0] = 1
	}
	binary.BigEndian.PutUint64(b[1:], o.seed)
	binary.BigEndian.PutUint64(b[9:], uint64(o.size))
	binary.BigEndian.PutUint64(b[17:], uint64(o.cut))
	return b
}

func streamBytes(seed uint64, n int64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)}).Read(b)
	return b
}

// ended is how one side saw a stream end.
type ended struct {
	clean bool // EOF (on TLS: close_notify)
	n     int64
	sum   [sha256.Size]byte
	err   error
}

// readEnd reads c to its end.
func readEnd(c net.Conn) ended {
	c.SetReadDeadline(time.Now().Add(testTimeout))
	h := sha256.New()
	n, err := io.Copy(h, c)
	e := ended{clean: err == nil, n: n, err: err}
	h.Sum(e.sum[:0])
	return e
}

// integrityBackend serves streamOrders; what it read of an upload is
// reported on uploads.
func integrityBackend(c net.Conn, uploads chan<- ended) {
	tc := c.(*net.TCPConn)
	c.SetDeadline(time.Now().Add(testTimeout))
	b := make([]byte, 25)
	if _, err := io.ReadFull(c, b); err != nil {
		return
	}
	o := streamOrder{up: b[0] == 1, seed: binary.BigEndian.Uint64(b[1:]),
		size: int64(binary.BigEndian.Uint64(b[9:])), cut: int64(binary.BigEndian.Uint64(b[17:]))}
	if o.up {
		uploads <- readEnd(c)
		return
	}
	data := streamBytes(o.seed, o.size)
	if o.cut > 0 {
		c.Write(data[:o.cut])
		tc.SetLinger(0)
		tc.Close()
		return
	}
	c.Write(data)
	tc.CloseWrite()
	io.Copy(io.Discard, c)
}

// TestNoShortCleanEnd runs many streams both ways through sluice, some of
// them cut by a reset from the sending side part-way, and checks that the
// receiving side never sees a clean end of a short stream: a stream that
// ends cleanly is whole, byte for byte.
func TestNoShortCleanEnd(t *testing.T) {
	for _, kind := range []string{"terminate", "plain"} {
		t.Run(kind, func(t *testing.T) {
			w := newWorld(t)
			uploads := make(chan ended, 256)
			be := w.backend(func(c net.Conn) { integrityBackend(c, uploads) })
			cfg := w.simple(be.addr())
			if kind == "plain" {
				cfg.Listeners[0].TLS = nil
			}
			_, addrs := w.serve(cfg)

			const streams = 40
			var wg sync.WaitGroup
			errs := make(chan error, 2*streams)
			for i := range streams {
				o := streamOrder{up: i%2 == 1, seed: uint64(i), size: int64(64<<10 + i*4099)}
				if i%3 == 0 {
					o.cut = o.size / int64(2+i%5)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := runStream(addrs[0], kind == "terminate", w, o); err != nil {
						errs <- fmt.Errorf("stream %+v: %w", o, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			// The uploads, as the backend saw them.
			for range streams / 2 {
				select {
				case e := <-uploads:
					if e.clean && !wholeStream(e) {
						t.Errorf("the backend saw a clean end after %d bytes of an upload that does not match", e.n)
					}
				case <-time.After(testTimeout):
					t.Fatal("an upload did not end at the backend")
				}
			}
		})
	}
}

// wholeStream reports whether e is one of the test's whole streams: its
// size and hash match the stream of the same size.
func wholeStream(e ended) bool {
	for i := range 40 {
		if size := int64(64<<10 + i*4099); size == e.n {
			return sha256.Sum256(streamBytes(uint64(i), size)) == e.sum
		}
	}
	return false
}

// runStream plays one order as the client.
func runStream(addr string, useTLS bool, w *world, o streamOrder) error {
	raw, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		return err
	}
	defer raw.Close()
	c := raw
	if useTLS {
		c = tls.Client(raw, &tls.Config{RootCAs: w.pool, ServerName: "localhost"})
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Write(o.marshal()); err != nil {
		return err
	}
	if o.up {
		data := streamBytes(o.seed, o.size)
		if o.cut > 0 {
			c.Write(data[:o.cut])
			raw.(*net.TCPConn).SetLinger(0)
			return nil
		}
		if _, err := c.Write(data); err != nil {
			return err
		}
		if tc, ok := c.(*tls.Conn); ok {
			tc.CloseWrite()
		}
		raw.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		return nil
	}
	e := readEnd(c)
	want := sha256.Sum256(streamBytes(o.seed, o.size))
	switch {
	case e.clean && (e.n != o.size || e.sum != want):
		return fmt.Errorf("clean end after %d of %d bytes, sha256 match %v", e.n, o.size, e.sum == want)
	case !e.clean && o.cut == 0:
		return fmt.Errorf("whole stream ended with %v after %d bytes", e.err, e.n)
	case o.cut > 0 && e.clean:
		return errors.New("a cut stream ended cleanly")
	case o.cut > 0 && e.n > o.cut:
		return fmt.Errorf("read %d bytes of a stream cut after %d", e.n, o.cut)
	}
	if !e.clean && !bytes.Contains([]byte(e.err.Error()), []byte("reset")) {
		return fmt.Errorf("cut stream ended with %v, want a reset", e.err)
	}
	return nil
}
