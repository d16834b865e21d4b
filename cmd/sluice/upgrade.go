package main

import (
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
	if err != nil {
		logger.Error("upgrade failed; this process serves on", "error", err)
		return false
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	logger.Info("upgrade: starting a new process", "executable", r.exe)
	child, err := handover.Start(r.exe, r.args, files, r.stdout, r.stderr, upgradeTimeout)
	if err != nil {
		logger.Error("upgrade failed; this process serves on", "error", err)
		return false
	}
	logger.Info("upgrade: the new process is ready; this one stops accepting and drains", "new_pid", child.Pid)
	child.Release()
	proxy.HandedOver()
	return true
}
