package tlsterm

import (
	"crypto/x509"
	"time"
)

// CertInfo describes one certificate a Store serves, with the files it came
// from, so that checks such as expiry warnings can name the configuration
// entry at fault.
type CertInfo struct {
	Index    int    // position in the files given to NewStore; -1 for the in-memory self-signed certificate
	File     string // the certificate file as configured; "" for the self-signed one
	KeyFile  string // the key file as configured; "" for the self-signed one
	Subject  string // the leaf's subject common name, else its first DNS name, else its first IP address
	NotAfter time.Time
}

// Certificates describes the certificates the store serves now, in
// configured order. It reads the current set once, so the files it names
// are those the served certificates were loaded from, even while a Reload
// swaps the set.
func (s *Store) Certificates() []CertInfo {
	set := s.set.Load()
	if set == nil {
		return nil
	}
	out := make([]CertInfo, len(set.certs))
	for i, c := range set.certs {
		info := CertInfo{Index: -1, Subject: subject(c.Leaf), NotAfter: c.Leaf.NotAfter}
		if set.files != nil {
			info.Index, info.File, info.KeyFile = i, set.files[i].Cert, set.files[i].Key
		}
		out[i] = info
	}
	return out
}

// subject names leaf for people: its common name, else its first DNS name,
// else its first IP address, else "".
func subject(leaf *x509.Certificate) string {
	switch {
	case leaf.Subject.CommonName != "":
		return leaf.Subject.CommonName
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0]
	case len(leaf.IPAddresses) > 0:
		return leaf.IPAddresses[0].String()
	}
	return ""
}
