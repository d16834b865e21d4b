package main

import (
	"os"
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
	child, err := handover.Start(r.exe, r.args, files, r.stdout, r.stderr, upgradeTimeout)
	if err != nil {
		r.obs.draining.Store(false)
		logger.Error("upgrade failed; this process serves on", "error", err)
		return false
	}
	child.Release()
	proxy.HandedOver()
	r.obs.handedOver()
	logger.Info("upgrade: the new process is ready; this one stops accepting and drains", "new_pid", child.Pid)
	return true
}
