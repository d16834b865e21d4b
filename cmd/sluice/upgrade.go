package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"sluice/handover"
	"sluice/l4"
)

// upgradeTimeout bounds how long a new process may take to say it is
// ready; until then, and if it fails, this one serves on.
const upgradeTimeout = 30 * time.Second

// upgrade starts the executable sluice was started from, read from disk
// anew, with the same arguments and this process's listening sockets
// (SIGUSR2, as in nginx and HAProxy). It reports whether the new process
// said it is ready: then this one is to drain and exit, and the new one
// accepts on the same sockets meanwhile, so no connection attempt is
// refused. Otherwise it logs why, and this process serves on.
func (r *running) upgrade(proxy *l4.Proxy) bool {
	logger := r.logs.logger
	files, err := proxy.ListenerFiles()
	if err == nil {
		var key string
		var f *os.File
		if key, f, err = r.obs.adminFile(); f != nil {
			files[key] = f
		}
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		logger.Error("upgrade failed; this process serves on", "error", err)
		return false
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	logger.Info("upgrade: starting a new process", "executable", r.exe)
	// Not ready while handing over: a balancer that asks now is told to
	// send elsewhere, and asks the new process once it answers.
	r.obs.draining.Store(true)
	// The connections go over a socket pair once the new process is
	// ready; without one it is an upgrade of the listeners only.
	parent, childEnd, perr := handover.ConnPair()
	if perr != nil {
		logger.Warn("upgrade: connections will drain here, not move", "error", perr)
	}
	child, err := handover.Start(r.exe, r.args, files, childEnd, r.stdout, r.stderr, upgradeTimeout)
	if childEnd != nil {
		childEnd.Close()
	}
	if err != nil {
		if parent != nil {
			parent.Close()
		}
		r.obs.draining.Store(false)
		logger.Error("upgrade failed; this process serves on", "error", err)
		return false
	}
	child.Release()
	proxy.HandedOver()
	r.obs.handedOver()
	logger.Info("upgrade: the new process is ready; this one stops accepting", "new_pid", child.Pid)
	if parent != nil {
		moveConns(proxy, parent, logger)
	}
	logger.Info("upgrade: this process drains the connections it keeps")
	return true
}

// moveConns moves every connection that can move to the new process over
// parent, the old process's end of the connection pair.
func moveConns(proxy *l4.Proxy, parent *os.File, logger *slog.Logger) {
	sender, err := handover.NewSender(parent)
	if err != nil {
		logger.Warn("upgrade: connections will drain here, not move", "error", err)
		return
	}
	defer sender.Close()
	start := time.Now()
	moved, stayed := proxy.MoveConns(context.Background(), func(state []byte, client, backend syscall.Conn) error {
		if err := sender.Send(state, client, backend); err != nil {
			if errors.Is(err, handover.ErrPeerGone) {
				return fmt.Errorf("%w: %w", l4.ErrMoveStopped, err)
			}
			return err
		}
		// After "go" the new process relays; this one must not, and the
		// caller releases its copies.
		if err := sender.Go(); err != nil {
			return fmt.Errorf("%w: %w", l4.ErrMoveStopped, err)
		}
		return nil
	})
	logger.Info("upgrade: connections moved to the new process", "moved", moved, "staying", stayed, "took", time.Since(start))
}

// receiveConns takes the connections an old process moves here, until it
// is done.
func receiveConns(proxy *l4.Proxy, conns *os.File, logger *slog.Logger) {
	start := time.Now()
	n, err := handover.Receive(conns, func(state []byte, cs []net.Conn) (func(), error) {
		if len(cs) != 2 {
			return nil, fmt.Errorf("%d sockets, want the client's and the backend's", len(cs))
		}
		return proxy.AdoptConn(state, cs[0], cs[1])
	})
	if err != nil {
		logger.Warn("upgrade: taking connections from the old process failed", "error", err)
	}
	logger.Info("upgrade: connections taken over from the old process", "connections", n, "took", time.Since(start))
}
