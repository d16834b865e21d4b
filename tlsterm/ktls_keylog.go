package tlsterm

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"sync"
)

// keyLog is one connection's tls.Config.KeyLogWriter. crypto/tls calls
// Write under a mutex shared by every connection in the process, so Write
// only keeps the line; secrets parses the lines after the handshake.
type keyLog struct {
	mu    sync.Mutex
	lines [][]byte
}

func (l *keyLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, bytes.Clone(p))
	l.mu.Unlock()
	return len(p), nil
}

// secrets are the NSS key-log values of one connection that the kernel's
// keys derive from.
type secrets struct {
	clientRandom []byte
	// TLS 1.3: CLIENT_TRAFFIC_SECRET_0 and SERVER_TRAFFIC_SECRET_0.
	clientTraffic, serverTraffic []byte
	// TLS 1.2: CLIENT_RANDOM's master secret.
	master []byte
}

// secrets parses the logged lines. A line for another client random (one
// log per connection makes that a bug) is an error, not skipped.
func (l *keyLog) secrets() (secrets, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s secrets
	for _, line := range l.lines {
		f := bytes.Fields(line)
		if len(f) != 3 {
			return secrets{}, fmt.Errorf("parse key log line: %d fields", len(f))
		}
		random, err := hex.DecodeString(string(f[1]))
		if err != nil {
			return secrets{}, fmt.Errorf("parse key log client random: %w", err)
		}
		secret, err := hex.DecodeString(string(f[2]))
		if err != nil {
			return secrets{}, fmt.Errorf("parse key log %s: %w", f[0], err)
		}
		if s.clientRandom != nil && !bytes.Equal(s.clientRandom, random) {
			return secrets{}, fmt.Errorf("parse key log: lines for two client randoms")
		}
		s.clientRandom = random
		switch string(f[0]) {
		case "CLIENT_TRAFFIC_SECRET_0":
			s.clientTraffic = secret
		case "SERVER_TRAFFIC_SECRET_0":
			s.serverTraffic = secret
		case "CLIENT_RANDOM":
			s.master = secret
		}
	}
	return s, nil
}

// WithKeyLog returns a config for tls.Server that logs each connection's
// secrets into the *RecordConn the connection runs on, so that
// RecordConn.Prepare can derive the kernel's keys. Connections over any
// other net.Conn get base's settings unchanged.
//
// Use one WithKeyLog config per listener, not one per connection:
// GetConfigForClient hands each handshake a clone of base (or of what
// base.GetConfigForClient returns) with KeyLogWriter set, and crypto/tls
// keeps taking the session ticket keys from the long-lived config passed to
// tls.Server, so tickets still resume. A clone passed straight to
// tls.Server would get its own ticket keys and silently end resumption.
// The alternative, one writer for every connection that sorts lines by
// client random, needs a shared map and an eviction rule; hanging the log
// off the connection needs neither.
func WithKeyLog(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	inner := base.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		chosen := base
		if inner != nil {
			c, err := inner(hello)
			if err != nil {
				return nil, err
			}
			if c != nil {
				chosen = c
			}
		}
		rc, ok := hello.Conn.(*RecordConn)
		if !ok {
			if chosen == base {
				return nil, nil
			}
			return chosen, nil
		}
		c := chosen.Clone()
		c.GetConfigForClient = nil
		c.KeyLogWriter = &rc.log
		return c, nil
	}
	return cfg
}
