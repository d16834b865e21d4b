package tlsterm

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"time"
)

// MaxSessionTicketLifetime is crypto/tls's own limit on a session ticket's
// age (7 days, the most RFC 8446 allows): a longer lifetime has no effect.
const MaxSessionTicketLifetime = 7 * 24 * time.Hour

// issuedTag starts the SessionState.Extra entry that holds when a ticket
// was issued, in Unix nanoseconds. crypto/tls keeps its own creation time
// private, so the ticket carries a copy.
var issuedTag = []byte("sluice issued ")

// limitTicketAge makes cfg refuse tickets issued more than lifetime ago,
// by cfg.Time (or the wall clock when it is nil). Tickets are encrypted and
// decrypted with the ticket keys of keys (nil: cfg), which crypto/tls
// rotates as it does by default; configs cloned from cfg later (perClient)
// keep calling keys, and so share them, and so do the configs of later
// reloads given the same keys.
//
// A TLS 1.2 resumption gets a new ticket for the same master secret (crypto/
// tls always sends one), stamped anew: a client that keeps coming back within
// the lifetime keeps its session, for at most crypto/tls's 7 days. TLS 1.3
// tickets still tell clients 7 days; those who present one too old just do
// a full handshake.
func limitTicketAge(cfg, keys *tls.Config, lifetime time.Duration) {
	if keys == nil {
		keys = cfg
	}
	now := func() time.Time {
		if cfg.Time != nil {
			return cfg.Time()
		}
		return time.Now()
	}
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = append(ss.Extra, binary.BigEndian.AppendUint64(bytes.Clone(issuedTag), uint64(now().UnixNano())))
		return keys.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := keys.DecryptTicket(identity, cs)
		if ss == nil || err != nil {
			return nil, err // (nil, nil): not ours or damaged, a full handshake
		}
		if issued, ok := ticketIssued(ss); !ok || now().Sub(issued) > lifetime {
			return nil, nil
		}
		return ss, nil
	}
}

// ticketIssued returns the issue time limitTicketAge stamped into ss.
func ticketIssued(ss *tls.SessionState) (time.Time, bool) {
	for _, e := range ss.Extra {
		if stamp, ok := bytes.CutPrefix(e, issuedTag); ok && len(stamp) == 8 {
			return time.Unix(0, int64(binary.BigEndian.Uint64(stamp))), true
		}
	}
	return time.Time{}, false
}
