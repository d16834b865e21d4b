package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
)

// The stream protocol. The client opens with a fixed header; the backend
// answers at once with an ack that names its process, then both sides
// move their payloads in the order the header's mode says. Payloads are
// ChaCha8 streams from the header's seed, so each receiver can compute
// what it should get without it crossing the wire.
const (
	headerMagic = "SOAK"
	ackMagic    = "SACK"
	headerLen   = 4 + 1 + 3 + 8 + 8 + 8 + 8
	ackLen      = 4 + 4
	chunkLen    = 32 << 10
)

// Directions, mixed into the payload seed so that up and down differ.
const (
	dirUp   byte = 'u'
	dirDown byte = 'd'
)

// mode is the half-close order of a stream.
type mode uint8

const (
	// modeBoth: both ends send at once and CloseWrite when done.
	modeBoth mode = iota
	// modeClientFirst: the client sends all and CloseWrites; the backend
	// starts sending only after it has read EOF.
	modeClientFirst
	// modeBackendFirst: the mirror image.
	modeBackendFirst
	numModes
)

func (m mode) String() string {
	switch m {
	case modeBoth:
		return "both"
	case modeClientFirst:
		return "client-first"
	case modeBackendFirst:
		return "backend-first"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// header is what the client sends first.
type header struct {
	ID   uint64
	Mode mode
	Up   int64 // bytes client → backend
	Down int64 // bytes backend → client
	Seed uint64
}

func (h header) marshal() []byte {
	b := make([]byte, headerLen)
	copy(b, headerMagic)
	b[4] = byte(h.Mode)
	binary.BigEndian.PutUint64(b[8:], h.ID)
	binary.BigEndian.PutUint64(b[16:], uint64(h.Up))
	binary.BigEndian.PutUint64(b[24:], uint64(h.Down))
	binary.BigEndian.PutUint64(b[32:], h.Seed)
	return b
}

var errBadHeader = errors.New("soak: bad header")

func parseHeader(b []byte) (header, error) {
	if len(b) != headerLen || string(b[:4]) != headerMagic || mode(b[4]) >= numModes {
		return header{}, errBadHeader
	}
	h := header{
		ID:   binary.BigEndian.Uint64(b[8:]),
		Mode: mode(b[4]),
		Up:   int64(binary.BigEndian.Uint64(b[16:])),
		Down: int64(binary.BigEndian.Uint64(b[24:])),
		Seed: binary.BigEndian.Uint64(b[32:]),
	}
	if h.Up < 0 || h.Down < 0 {
		return header{}, errBadHeader
	}
	return h, nil
}

func marshalAck(pid int) []byte {
	b := make([]byte, ackLen)
	copy(b, ackMagic)
	binary.BigEndian.PutUint32(b[4:], uint32(pid))
	return b
}

var errBadAck = errors.New("soak: bad ack")

func parseAck(b []byte) (int, error) {
	if len(b) != ackLen || string(b[:4]) != ackMagic {
		return 0, errBadAck
	}
	return int(binary.BigEndian.Uint32(b[4:])), nil
}

// payload is the deterministic byte stream of one direction of a stream.
func payload(seed uint64, dir byte) *rand.ChaCha8 {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	key[8] = dir
	copy(key[16:], "sluice-soak")
	return rand.NewChaCha8(key)
}

// sendPayload writes n bytes of the direction's stream to w.
func sendPayload(w io.Writer, seed uint64, dir byte, n int64) (int64, error) {
	src := payload(seed, dir)
	buf := make([]byte, min(n, chunkLen))
	var sent int64
	for sent < n {
		p := buf[:min(n-sent, int64(len(buf)))]
		src.Read(p)
		k, err := w.Write(p)
		sent += int64(k)
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// received is what one end got in one direction.
type received struct {
	Want    int64
	Got     int64
	Corrupt int64 // bytes that differ from the expected stream, plus any excess
	Err     error // the read error, nil on a clean EOF
	sumOK   bool  // SHA-256 of what came equals that of what was sent
}

// receivePayload reads r to EOF or an error, hashing what arrives and
// comparing it with the expected stream in lockstep. The byte comparison
// says how many bytes are corrupt; the SHA-256 is the end-to-end check.
func receivePayload(r io.Reader, seed uint64, dir byte, want int64) received {
	exp := payload(seed, dir)
	gotSum, expSum := sha256.New(), sha256.New()
	buf := make([]byte, chunkLen)
	ebuf := make([]byte, chunkLen)
	res := received{Want: want}
	for {
		n, err := r.Read(buf)
		if n > 0 {
			res.compare(buf[:n], exp, ebuf, gotSum, expSum)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			res.Err = err
			break
		}
	}
	res.sumOK = res.Got == want && bytes.Equal(gotSum.Sum(nil), expSum.Sum(nil))
	return res
}

func (res *received) compare(p []byte, exp *rand.ChaCha8, ebuf []byte, gotSum, expSum hash.Hash) {
	gotSum.Write(p)
	inRange := min(int64(len(p)), max(res.Want-res.Got, 0))
	e := ebuf[:inRange]
	exp.Read(e)
	expSum.Write(e)
	for i := range e {
		if p[i] != e[i] {
			res.Corrupt++
		}
	}
	res.Corrupt += int64(len(p)) - inRange
	res.Got += int64(len(p))
}

// Stream statuses, from either end.
const (
	statusOK        = "ok"
	statusFail      = "fail"      // an error: RST, unexpected EOF, timeout
	statusTruncated = "truncated" // a clean end with fewer bytes than sent
	statusCorrupted = "corrupted" // the bytes or their hash differ
)

// judgeReceived turns what a direction got into a status and cause.
func judgeReceived(phase string, r received) (status, cause string) {
	switch {
	case r.Corrupt > 0 || (r.Got >= r.Want && !r.sumOK):
		return statusCorrupted, phase + ":corrupted"
	case r.Err != nil:
		return statusFail, phase + ":" + errCause(r.Err)
	case r.Got < r.Want:
		return statusTruncated, phase + ":clean_eof_short"
	}
	return statusOK, ""
}
