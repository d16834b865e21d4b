package l4

import (
	"fmt"
	"net"
	"os"
)

// Inherit hands Listen sockets that are already listening, keyed by their
// configured address (a binary upgrade passes the old process's sockets,
// see package handover): Listen takes a listener's socket from here rather
// than binding its address, and applies the listener's socket options to
// it. Files for addresses the configuration no longer has are closed.
func (p *Proxy) Inherit(files map[string]*os.File) {
	p.mu.Lock()
	p.inherited = files
	p.mu.Unlock()
}

// inheritedListener makes the listener of an inherited socket.
func inheritedListener(f *os.File, so SocketOptions) (net.Listener, error) {
	defer f.Close() // FileListener has its own copy
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("inherit socket: %w", err)
	}
	var l net.Listener
	switch v := ln.(type) {
	case *net.TCPListener:
		l = &tcpListener{TCPListener: v}
	case *net.UnixListener:
		l = &unixListener{UnixListener: v}
	default:
		ln.Close()
		return nil, fmt.Errorf("inherit socket: a %T, not a TCP or unix listener", ln)
	}
	if err := adopt(l, so); err != nil {
		l.Close()
		return nil, fmt.Errorf("inherit socket: %w", err)
	}
	return l, nil
}

// ListenerFiles returns a copy of each listening socket, keyed by its
// configured address, for a new process to inherit. The caller closes
// them.
func (p *Proxy) ListenerFiles() (map[string]*os.File, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	files := make(map[string]*os.File, len(p.gen.listeners))
	for i, ln := range p.gen.listeners {
		var f *os.File
		var err error
		switch l := ln.(type) {
		case *tcpListener:
			f, err = l.File()
		case *unixListener:
			f, err = l.File()
		default:
			err = fmt.Errorf("a %T cannot be handed on", ln)
		}
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("listener[%d]: %w", i, err)
		}
		files[p.gen.cfg.Listeners[i].Address] = f
	}
	return files, nil
}

// HandedOver stops accepting, once a new process accepts on the same
// sockets: each listener's accept loop ends and closes this process's
// descriptor, leaving a unix socket's file, which the new process serves,
// in place. A connection accepted meanwhile is served here; one still in
// the accept queue is the new process's. Shutdown then drains as usual.
// (Shutdown alone would close the descriptors under the loops, and drop a
// connection accepted at that moment.)
func (p *Proxy) HandedOver() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ln := range p.gen.listeners {
		if l, ok := ln.(*unixListener); ok {
			l.SetUnlinkOnClose(false)
		}
	}
	for _, s := range p.gen.servers {
		s.retire(false)
	}
}
