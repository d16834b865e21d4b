package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"

	"sluice/bench/internal/proc"
)

// What the process that is upgraded logs (cmd/sluice/upgrade.go).
const (
	msgUpgradeReady  = "upgrade: the new process is ready; this one stops accepting"
	msgUpgradeMoved  = "upgrade: connections moved to the new process"
	msgUpgradeDrains = "upgrade: this process drains the connections it keeps"
	msgUpgradeFailed = "upgrade failed; this process serves on"
)

// Bounds on an upgrade: from SIGUSR2 until the old process has moved its
// connections, and beyond the drain timeout until it has exited.
const (
	upgradeTimeout = 20 * time.Second
	oldExitSlack   = 5 * time.Second
)

// upgrade is one binary upgrade as the soak saw it.
type upgrade struct {
	OldPID  int           `json:"old_pid"`
	NewPID  int           `json:"new_pid"`
	Moved   int           `json:"moved"`
	Staying int           `json:"staying"`
	Ready   time.Duration `json:"ready_ns"`    // SIGUSR2 → the new process is ready
	Done    time.Duration `json:"moved_ns"`    // SIGUSR2 → the connections moved
	OldGone time.Duration `json:"old_gone_ns"` // moved → the old process exited
	OldExit string        `json:"old_exit"`
}

// upgradeLoop upgrades sluice every upgradeEvery until ctx ends: SIGUSR2
// to the process that serves, which starts its executable anew, hands it
// the listeners, moves its connections to it and drains what stays. Each
// upgrade is followed until the old process has exited and the new one is
// the only sluice left, and is not cut short by ctx.
func (f *faults) upgradeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.upgradeEvery):
		}
		old, u, err := f.upgrade()
		if err == nil {
			err = f.awaitOld(old, &u)
		}
		if u.NewPID != 0 {
			f.mu.Lock()
			f.upgrades = append(f.upgrades, u)
			f.mu.Unlock()
		}
		if err != nil {
			f.problem("upgrade of sluice %d: %v", old.Pid, err)
			if old != f.current() {
				old.Stop(drainTimeout + oldExitSlack) // replaced, but the upgrade went wrong after
			}
			return
		}
	}
}

// upgrade sends SIGUSR2 and follows the old process's log until it has
// moved its connections. From its ready line on, the new process is the
// one signals go to, and its reload counters start at zero.
func (f *faults) upgrade() (*proc.Proc, upgrade, error) {
	f.signalling.Lock()
	defer f.signalling.Unlock()
	old := f.current()
	u := upgrade{OldPID: old.Pid}
	tail, err := openTail(f.logPath)
	if err != nil {
		return old, u, err
	}
	defer tail.close()
	start := time.Now()
	if err := old.Signal(syscall.SIGUSR2); err != nil {
		return old, u, fmt.Errorf("SIGUSR2: %w", err)
	}
	for {
		line, err := tail.next(start.Add(upgradeTimeout), old.Done())
		if err != nil {
			return old, u, err
		}
		switch logMsg(line) {
		case msgUpgradeFailed:
			return old, u, fmt.Errorf("it logged %s", line)
		case msgUpgradeReady:
			if u.NewPID, err = strconv.Atoi(logAttr(line, "new_pid")); err != nil {
				return old, u, fmt.Errorf("no new pid in %s", line)
			}
			u.Ready = time.Since(start)
			next, err := proc.Adopt("sluice", u.NewPID)
			if err != nil {
				return old, u, err
			}
			f.mu.Lock()
			f.sluice = next
			f.counted.reloads, f.counted.refused = f.reloads, f.refused
			f.mu.Unlock()
		case msgUpgradeMoved:
			if u.NewPID == 0 {
				return old, u, fmt.Errorf("connections moved before a new process was ready: %s", line)
			}
			u.Moved, err = strconv.Atoi(logAttr(line, "moved"))
			if err == nil {
				u.Staying, err = strconv.Atoi(logAttr(line, "staying"))
			}
			if err != nil {
				return old, u, fmt.Errorf("no counts in %s", line)
			}
			u.Done = time.Since(start)
			return old, u, nil
		case msgUpgradeDrains:
			return old, u, fmt.Errorf("no connection was moved: %s", line)
		}
	}
}

// awaitOld waits until the process an upgrade replaced has drained what
// stayed and exited 0, and the new one is the only sluice left, within the
// drain timeout and some slack. A process still there then is SIGKILLed.
func (f *faults) awaitOld(old *proc.Proc, u *upgrade) error {
	start := time.Now()
	deadline := start.Add(drainTimeout + oldExitSlack)
	select {
	case <-old.Done():
		u.OldGone = time.Since(start)
	case <-time.After(time.Until(deadline)):
		old.Signal(syscall.SIGKILL)
		<-old.Done()
		return fmt.Errorf("it did not exit within %v of moving %d connections (%d stayed)",
			drainTimeout+oldExitSlack, u.Moved, u.Staying)
	}
	u.OldExit = "0"
	if old.Err() != nil {
		u.OldExit = old.Err().Error()
		if !errors.Is(old.Err(), proc.ErrExitUnknown) {
			return fmt.Errorf("it exited after the upgrade: %v", old.Err())
		}
	}
	for {
		live := liveSluices(f.sluiceComm, u.NewPID)
		if len(live) == 1 && live[0] == u.NewPID {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sluice processes alive after the upgrade: %v, want only %d", live, u.NewPID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logTail reads the lines appended to sluice's log from when it was
// opened.
type logTail struct {
	f       *os.File
	r       *bufio.Reader
	partial []byte
}

func openTail(path string) (*logTail, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open sluice log: %w", err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek sluice log: %w", err)
	}
	return &logTail{f: f, r: bufio.NewReaderSize(f, 64<<10)}, nil
}

// next returns the next whole line, waiting for it until deadline. Once
// the writer has exited (done), what it wrote is still read, and then
// there is no more.
func (t *logTail) next(deadline time.Time, done <-chan struct{}) (string, error) {
	for {
		exited := closed(done) // before the read, which then sees all it wrote
		b, err := t.r.ReadSlice('\n')
		t.partial = append(t.partial, b...)
		switch {
		case err == nil:
			line := string(t.partial[:len(t.partial)-1])
			t.partial = t.partial[:0]
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case !errors.Is(err, io.EOF):
			return "", fmt.Errorf("read sluice log: %w", err)
		case exited:
			return "", errors.New("it exited during the upgrade")
		case time.Now().After(deadline):
			return "", fmt.Errorf("the upgrade did not finish within %v", upgradeTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (t *logTail) close() { t.f.Close() }
