//go:build !linux

package splice

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// Elsewhere than Linux every direction copies with blocking reads: no
// splice(2), no non-blocking reads, no parking.

var errUnsupported = errors.New("splice: not supported on this system")

func rawSocket(net.Conn) syscall.RawConn                { return nil }
func readNonblock(syscall.RawConn, []byte) (int, error) { return 0, errUnsupported }

// sockReader is readNonblock and waitReadable (socket_linux.go).
type sockReader struct{}

func (*sockReader) read(syscall.RawConn, []byte) (int, error)     { return 0, errUnsupported }
func (*sockReader) readWait(syscall.RawConn, []byte) (int, error) { return 0, errUnsupported }
func (*sockReader) wait(syscall.RawConn) error                    { return errUnsupported }
func waitReadable(syscall.RawConn) error                          { return errUnsupported }
func spliceIn(syscall.RawConn, *pipe) (int, error)                { return 0, errUnsupported }
func spliceOut(syscall.RawConn, *pipe) (int, error)               { return 0, errUnsupported }
func isSpliceUnsupported(error) bool                              { return true }
func setRcvLowat(syscall.RawConn, int) error                      { return errUnsupported }
func resetSeen(syscall.RawConn) bool                              { return false }
func finReceived(syscall.RawConn) bool                            { return true }

// PipePool lends pipes to splice(2) relays on Linux; elsewhere it is
// never used.
type PipePool struct {
	Size    int
	MaxIdle int
}

type pipe struct{}

func (p *PipePool) get() (*pipe, error) { return nil, errUnsupported }
func (p *PipePool) put(*pipe)           {}

// PipeStats counts a PipePool's pipes.
type PipeStats struct{ InUse, Open int64 }

// Stats reports no pipes.
func (p *PipePool) Stats() PipeStats { return PipeStats{} }

// Close does nothing.
func (p *PipePool) Close() {}

var defaultPipes PipePool

// Parker parks idle relay directions on Linux; elsewhere NewParker fails
// and relays keep their goroutines.
type Parker struct {
	spare   sync.Pool    // never filled: nothing parks
	runners *runners     // never used: nothing resumes
	rereads atomic.Int64 // never counts: nothing parks
}

// NewParker reports that parking is not supported here.
func NewParker() (*Parker, error) { return nil, errUnsupported }

// Close does nothing.
func (p *Parker) Close() error { return nil }

// Parked reports none.
func (p *Parker) Parked() int { return 0 }

// registration is a direction's entry in the Parker's set: none here.
type registration struct{}

// keptArmed: nothing is in a set here.
func (*registration) keptArmed(bool) bool { return false }

func (p *Parker) add(*half) error    { return errUnsupported }
func (p *Parker) remove(*half, bool) {}
func (p *Parker) drop(*half)         {}

// Moving bytes in place (inplace.go) needs TCP_INQ.
func enableInq(syscall.RawConn) bool { return false }

type inqReader struct{ empty, trust bool }

func (*inqReader) read(int, []byte) (int, error) { return 0, errUnsupported }

type sockWriter struct{}

func (*sockWriter) write(syscall.RawConn, []byte, bool) (int, error) { return 0, errUnsupported }

func (*sockReader) readPaced(syscall.RawConn, []byte, Pacer) (int, error) {
	return 0, errUnsupported
}

func (*sockWriter) writePaced(syscall.RawConn, []byte, Pacer) (int, error) {
	return 0, errUnsupported
}
