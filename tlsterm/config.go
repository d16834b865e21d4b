package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options are a listener's TLS settings. The zero value gives the secure
// defaults: TLS 1.2 and 1.3, ECDHE key exchange with AEAD ciphers only,
// X25519 and P-256, no ALPN, no client certificates, session resumption on.
type Options struct {
	// MinVersion is tls.VersionTLS12 (the default when zero) or
	// tls.VersionTLS13.
	MinVersion uint16
	// CipherSuites limits the TLS 1.2 suites; nil means DefaultCipherSuites.
	// TLS 1.3 suites are not configurable (crypto/tls picks them).
	CipherSuites []uint16
	// Curves are the key exchange groups in preference order; nil means
	// DefaultCurves.
	Curves []tls.CurveID
	// NextProtos are the ALPN protocols offered, in preference order.
	NextProtos []string
	// ClientCAs verifies client certificates; ClientAuth says when they are
	// asked for. When nil, the store's client CAs (Store.SetClientCAFile)
	// are used, as they are at each handshake.
	ClientCAs  *x509.CertPool
	ClientAuth tls.ClientAuthType
	// SessionTicketsDisabled turns off resumption by session tickets.
	SessionTicketsDisabled bool
	// SessionTicketLifetime, when positive, refuses session tickets issued
	// longer ago than this: the client does a full handshake instead. Zero
	// leaves crypto/tls's own limit, MaxSessionTicketLifetime. The time is
	// read from the config's Time, when set.
	SessionTicketLifetime time.Duration
	// NextProtosFor, if set, chooses the protocols offered to each client
	// (from NextProtos, which is all it may offer); nil offers NextProtos
	// to every client.
	NextProtosFor func(*tls.ClientHelloInfo) []string
	// TicketKeys, if set, is the config whose session ticket keys
	// encrypt and decrypt this one's tickets, so that configs built one
	// after another, by reloads, resume each other's sessions, and so do
	// processes given the same keys (TicketKeys.Config). Nil: the
	// config's own keys.
	TicketKeys *tls.Config
	// DynamicRecordSizing turns on crypto/tls's adaptive record sizes:
	// a connection's first record holds one TCP segment, each after it
	// one more, up to 16 KiB (or from 128 KiB sent), so that a browser
	// can start on the first bytes of a page sooner. Off, a write goes
	// out in 16 KiB records, as nginx (ssl_buffer_size 16k) and HAProxy
	// send them: a 3.6 KiB response is one record and one system call,
	// not three.
	DynamicRecordSizing bool
}

// DefaultCipherSuites are the TLS 1.2 suites offered by default: ECDHE key
// exchange and AEAD ciphers only.
var DefaultCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// DefaultCurves are the key exchange groups offered by default.
var DefaultCurves = []tls.CurveID{tls.X25519, tls.CurveP256}

// NewConfig builds the server *tls.Config for a listener whose certificates
// live in store.
func NewConfig(store *Store, o Options) *tls.Config {
	cfg := &tls.Config{
		GetCertificate:         store.GetCertificate,
		MinVersion:             o.MinVersion,
		CipherSuites:           o.CipherSuites,
		CurvePreferences:       o.Curves,
		NextProtos:             o.NextProtos,
		ClientCAs:              o.ClientCAs,
		ClientAuth:             o.ClientAuth,
		SessionTicketsDisabled: o.SessionTicketsDisabled,

		DynamicRecordSizingDisabled: !o.DynamicRecordSizing,
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	// Copies, so nobody can change the package defaults through a config.
	if cfg.CipherSuites == nil {
		cfg.CipherSuites = slices.Clone(DefaultCipherSuites)
	}
	if cfg.CurvePreferences == nil {
		cfg.CurvePreferences = slices.Clone(DefaultCurves)
	}
	if !o.SessionTicketsDisabled && (o.SessionTicketLifetime > 0 || o.TicketKeys != nil) {
		lifetime := o.SessionTicketLifetime
		if lifetime <= 0 {
			lifetime = MaxSessionTicketLifetime
		}
		limitTicketAge(cfg, o.TicketKeys, lifetime)
	}
	storeCAs := cfg.ClientCAs == nil && store.ClientCAs() != nil
	if storeCAs || o.NextProtosFor != nil {
		cfg.GetConfigForClient = perClient(cfg, store, storeCAs, o.NextProtosFor)
	}
	return cfg
}

// perClient returns a GetConfigForClient that hands out base with the
// store's current client CA pool (if storeCAs) and the protocols
// nextProtos chooses for the client (if set). It builds one config per
// distinct offer, again only when a reload changed the pool, so a
// handshake costs a map lookup rather than a Clone.
//
// Tickets issued before a CA reload still resume: the clones set no ticket
// keys of their own, so crypto/tls keeps using base's. That is safe because
// crypto/tls verifies a resumed session's client chain against the current
// pool, and makes a client the new CAs refuse do a full handshake, which
// fails.
func perClient(base *tls.Config, store *Store, storeCAs bool, nextProtos func(*tls.ClientHelloInfo) []string) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	type current struct {
		pool    *x509.CertPool
		byOffer sync.Map // strings.Join(offer, "\x00") → *tls.Config
	}
	var cur atomic.Pointer[current]
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		pool := base.ClientCAs
		if storeCAs {
			pool = store.ClientCAs()
		}
		c := cur.Load()
		if c == nil || c.pool != pool {
			c = &current{pool: pool}
			cur.Store(c)
		}
		offer := base.NextProtos
		if nextProtos != nil {
			offer = nextProtos(hello)
		}
		key := strings.Join(offer, "\x00")
		if cfg, ok := c.byOffer.Load(key); ok {
			return cfg.(*tls.Config), nil
		}
		cfg := base.Clone()
		cfg.GetConfigForClient = nil
		cfg.ClientCAs = pool
		cfg.NextProtos = offer
		c.byOffer.Store(key, cfg)
		return cfg, nil
	}
}

// ParseVersion accepts "1.2" or "1.3" (also "TLSv1.2"/"TLSv1.3", as nginx
// and HAProxy spell them).
func ParseVersion(s string) (uint16, error) {
	switch v := strings.ToLower(s); strings.TrimPrefix(v, "tlsv") {
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unsupported TLS version %q: expected \"1.2\" or \"1.3\"", s)
}

// openSSLSuites maps OpenSSL's names, which nginx and HAProxy configs use,
// to the secure suites.
var openSSLSuites = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ParseCipherSuite accepts a TLS 1.2 ECDHE+AEAD suite by its IANA name
// (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) or OpenSSL name
// (ECDHE-RSA-AES128-GCM-SHA256). Anything weaker is refused by name.
func ParseCipherSuite(s string) (uint16, error) {
	if id, ok := openSSLSuites[s]; ok {
		return id, nil
	}
	for _, cs := range tls.CipherSuites() {
		if cs.Name == s {
			// tls.CipherSuites lists the TLS 1.3 suites too.
			if !slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
				return 0, fmt.Errorf("cipher suite %s is a TLS 1.3 suite: those are always on and not configurable", s)
			}
			if !slices.Contains(DefaultCipherSuites, cs.ID) {
				return 0, fmt.Errorf("cipher suite %s is not ECDHE with AEAD: refused", s)
			}
			return cs.ID, nil
		}
	}
	for _, cs := range tls.InsecureCipherSuites() {
		if cs.Name == s {
			return 0, fmt.Errorf("cipher suite %s is insecure: refused", s)
		}
	}
	if strings.HasPrefix(s, "TLS_AES_") || strings.HasPrefix(s, "TLS_CHACHA20_") {
		return 0, fmt.Errorf("cipher suite %s is a TLS 1.3 suite: those are always on and not configurable", s)
	}
	return 0, fmt.Errorf("unknown cipher suite %q: expected a name such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or ECDHE-RSA-AES128-GCM-SHA256", s)
}

var curveNames = map[string]tls.CurveID{
	"x25519":             tls.X25519,
	"p-256":              tls.CurveP256,
	"prime256v1":         tls.CurveP256,
	"secp256r1":          tls.CurveP256,
	"p-384":              tls.CurveP384,
	"secp384r1":          tls.CurveP384,
	"p-521":              tls.CurveP521,
	"secp521r1":          tls.CurveP521,
	"x25519mlkem768":     tls.X25519MLKEM768,
	"secp256r1mlkem768":  tls.SecP256r1MLKEM768,
	"secp384r1mlkem1024": tls.SecP384r1MLKEM1024,
}

// ParseCurve accepts a key exchange group name: X25519, P-256, P-384,
// P-521 (or their OpenSSL names), X25519MLKEM768, SecP256r1MLKEM768,
// SecP384r1MLKEM1024. Case does not matter.
func ParseCurve(s string) (tls.CurveID, error) {
	if id, ok := curveNames[strings.ToLower(s)]; ok {
		return id, nil
	}
	return 0, fmt.Errorf("unknown curve %q: expected one of X25519, P-256, P-384, P-521, X25519MLKEM768", s)
}

// ParseClientAuth accepts "none" (or ""), "request" (ask for a
// certificate and verify it if one is sent, like nginx's
// ssl_verify_client optional) or "require".
func ParseClientAuth(s string) (tls.ClientAuthType, error) {
	switch s {
	case "", "none":
		return tls.NoClientCert, nil
	case "request":
		return tls.VerifyClientCertIfGiven, nil
	case "require":
		return tls.RequireAndVerifyClientCert, nil
	}
	return 0, fmt.Errorf("unknown client_auth %q: expected \"none\", \"request\" or \"require\"", s)
}

// LoadCertPool reads PEM CA certificates from file.
func LoadCertPool(file string) (*x509.CertPool, error) {
	pem, err := readPEM(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("read CA file %s: no PEM certificate found", file)
	}
	return pool, nil
}
