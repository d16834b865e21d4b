// Package tlsterm holds what sluice needs to terminate TLS: certificates
// chosen by SNI, the *tls.Config built from an operator's options, the
// handshake with its deadline, and a summary of the negotiated session for
// routing, logs and PROXY TLVs. For passthrough routes it peeks at the
// ClientHello without consuming it. It owns no sockets and relays nothing.
package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoCertificate is returned by a Store that holds no certificate at all.
var ErrNoCertificate = errors.New("tlsterm: no certificate")

// CertFile names a PEM certificate chain and its private key.
type CertFile struct {
	Cert string
	Key  string
}

// Store holds a listener's certificates and picks one per handshake by SNI:
// an exact name first, then a wildcard one label up, then the default (the
// first certificate configured). Among several certificates for one name
// (say ECDSA and RSA) it picks the first the client supports. Reload swaps
// the whole set atomically, so handshakes in flight keep the set they began
// with.
type Store struct {
	files  []CertFile
	caFile string
	logger *slog.Logger
	set    atomic.Pointer[certSet]
	ca     atomic.Pointer[x509.CertPool] // client CAs, when caFile is set

	stampMu sync.Mutex
	stamp   fileStamp // of the files as the last Reload found them
}

// certSet is what a Store serves between reloads. The files travel with
// the certificates, so that Certificates describes exactly the set being
// served, whichever Reload stored it.
type certSet struct {
	byName map[string][]*tls.Certificate // lower-case DNS name, or "*.example.com"
	def    *tls.Certificate
	certs  []*tls.Certificate // in configured order
	files  []CertFile         // files[i] holds certs[i]; nil for the self-signed set
}

// NewStore loads files and, if clientCA is not empty, the CAs client
// certificates are verified against (a *tls.Config made by NewConfig for
// this store uses the current pool at each handshake). With no files at all
// it makes an in-memory self-signed certificate for localhost, 127.0.0.1 and
// ::1 and logs a warning, so that a fresh install answers out of the box.
// Errors are joined *CertErrors and a *CAError naming the files at fault.
func NewStore(files []CertFile, clientCA string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// A copy: the caller's slice may change, and sets name their files.
	s := &Store{files: slices.Clone(files), caFile: clientCA, logger: logger}
	if len(files) == 0 {
		cert, err := SelfSigned([]string{"localhost", "127.0.0.1", "::1"}, time.Now())
		if err != nil {
			return nil, err
		}
		logger.Warn("no certificate configured: using an in-memory self-signed certificate; clients will not trust it",
			"names", "localhost,127.0.0.1,::1")
		s.set.Store(newCertSet([]*tls.Certificate{cert}, nil))
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// SelfSigned reports whether the store serves a generated certificate.
func (s *Store) SelfSigned() bool { return len(s.files) == 0 }

// ClientCAs returns the current client CA pool, or nil.
func (s *Store) ClientCAs() *x509.CertPool { return s.ca.Load() }

// CAError is a client CA file that could not be loaded.
type CAError struct{ Err error }

func (e *CAError) Error() string { return "client CA: " + e.Err.Error() }
func (e *CAError) Unwrap() error { return e.Err }

// CertError is a certificate that could not be loaded: Index is its
// position in the files given to NewStore.
type CertError struct {
	Index int
	Err   error
}

func (e *CertError) Error() string { return fmt.Sprintf("certificate %d: %v", e.Index, e.Err) }
func (e *CertError) Unwrap() error { return e.Err }

// Reload reads every certificate file, and the client CA file, again. If
// any of them fails, the store keeps serving what it had, certificates and
// CAs alike; the error joins one *CertError per certificate at fault and a
// *CAError for the CA file.
func (s *Store) Reload() error {
	// Stamped before reading: a change made while reading is seen again.
	stamp := stampFiles(s.paths()...)
	s.stampMu.Lock()
	s.stamp = stamp
	s.stampMu.Unlock()
	certs := make([]*tls.Certificate, 0, len(s.files))
	var errs []error
	var pool *x509.CertPool
	if s.caFile != "" {
		var err error
		if pool, err = LoadCertPool(s.caFile); err != nil {
			errs = append(errs, &CAError{Err: err})
		}
	}
	for i, f := range s.files {
		cert, err := LoadCertificate(f)
		if err != nil {
			errs = append(errs, &CertError{Index: i, Err: err})
			continue
		}
		// Not an error: the clock of whoever issued it may run a little
		// ahead, and the certificate becomes good by itself.
		if time.Now().Before(cert.Leaf.NotBefore) {
			s.logger.Warn("certificate is not yet valid; clients will refuse it until then",
				"cert", f.Cert, "not_before", cert.Leaf.NotBefore)
		}
		certs = append(certs, cert)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(s.files) > 0 {
		s.set.Store(newCertSet(certs, s.files))
	}
	if pool != nil {
		s.ca.Store(pool)
	}
	return nil
}

// Changed reports whether any of the store's files (certificates, keys,
// client CAs) is not what the last Reload found: see fileStamp.
func (s *Store) Changed() bool {
	stamp := stampFiles(s.paths()...)
	s.stampMu.Lock()
	defer s.stampMu.Unlock()
	return stamp != s.stamp
}

// paths lists the store's files.
func (s *Store) paths() []string {
	paths := make([]string, 0, 2*len(s.files)+1)
	for _, f := range s.files {
		paths = append(paths, f.Cert, f.Key)
	}
	if s.caFile != "" {
		paths = append(paths, s.caFile)
	}
	return paths
}

// LoadCertificate reads one certificate chain and key, checks that they
// belong together and that the leaf has not expired. The error names the
// file at fault. An expired certificate is an error, not a warning, so that
// a reload keeps the current one: clients would refuse it anyway.
func LoadCertificate(f CertFile) (*tls.Certificate, error) {
	certPEM, err := readPEM(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	keyPEM, err := readPEM(f.Key)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	if keyEncrypted(keyPEM) {
		return nil, fmt.Errorf("load key %s: it is encrypted with a passphrase, and sluice cannot read passphrases: "+
			"decrypt it with \"openssl pkey -in %s -out %s\" and set key to the decrypted file", f.Key, f.Key, plainKeyName(f.Key))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	// X509KeyPair fills Leaf since Go 1.23.
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse certificate %s: %w", f.Cert, err)
		}
	}
	if na := cert.Leaf.NotAfter; time.Now().After(na) {
		return nil, fmt.Errorf("load certificate %s: certificate expired on %s (NotAfter)", f.Cert, na.UTC().Format(time.DateOnly))
	}
	return &cert, nil
}

// keyEncrypted reports whether the private key tls.X509KeyPair would take
// from keyPEM (the first block whose type ends in "PRIVATE KEY") is
// encrypted: PKCS #8 "ENCRYPTED PRIVATE KEY", or OpenSSL's legacy
// "Proc-Type: 4,ENCRYPTED" header. Either way crypto/tls can only say it
// failed to parse it.
func keyEncrypted(keyPEM []byte) bool {
	for {
		var b *pem.Block
		if b, keyPEM = pem.Decode(keyPEM); b == nil {
			return false
		}
		if b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY") {
			return b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED")
		}
	}
}

// plainKeyName suggests a name for the decrypted copy of key file name:
// "key.pem" → "key-plain.pem".
func plainKeyName(name string) string {
	ext := filepath.Ext(name)
	return strings.TrimSuffix(name, ext) + "-plain" + ext
}

// newCertSet indexes certs, loaded from files (nil for the self-signed
// certificate), by name.
func newCertSet(certs []*tls.Certificate, files []CertFile) *certSet {
	cs := &certSet{byName: make(map[string][]*tls.Certificate), certs: certs, files: files}
	for _, c := range certs {
		if cs.def == nil {
			cs.def = c
		}
		for _, name := range certNames(c.Leaf) {
			cs.byName[name] = append(cs.byName[name], c)
		}
	}
	return cs
}

// certNames lists the DNS names a certificate is valid for, lower-cased;
// the subject common name counts only when there are no DNS SANs.
func certNames(leaf *x509.Certificate) []string {
	names := leaf.DNSNames
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = []string{leaf.Subject.CommonName}
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, strings.ToLower(strings.TrimSuffix(n, ".")))
	}
	return out
}

// Names lists the names the store holds certificates for, for logs.
func (s *Store) Names() []string {
	set := s.set.Load()
	if set == nil {
		return nil
	}
	out := make([]string, 0, len(set.byName))
	for n := range set.byName {
		out = append(out, n)
	}
	return out
}

// Covers reports whether the store holds a certificate for name itself,
// exactly or through a wildcard one label up, rather than answering it with
// the default. name may be a wildcard pattern ("*.example.com"), which only
// a wildcard certificate for the same pattern covers.
func (s *Store) Covers(name string) bool {
	set := s.set.Load()
	if set == nil {
		return false
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if len(set.byName[name]) > 0 {
		return true
	}
	if strings.HasPrefix(name, "*.") {
		return false
	}
	i := strings.IndexByte(name, '.')
	return i > 0 && len(set.byName["*"+name[i:]]) > 0
}

// GetCertificate implements tls.Config.GetCertificate.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := s.set.Load()
	if set == nil || set.def == nil {
		return nil, ErrNoCertificate
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" {
		if c := pick(hello, set.byName[name]); c != nil {
			return c, nil
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c := pick(hello, set.byName["*"+name[i:]]); c != nil {
				return c, nil
			}
		}
	}
	return set.def, nil
}

// pick returns the first of certs the client can use, or the first of them
// when it cannot tell.
func pick(hello *tls.ClientHelloInfo, certs []*tls.Certificate) *tls.Certificate {
	if len(certs) == 0 {
		return nil
	}
	for _, c := range certs {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return certs[0]
}
