package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"sluice/tlsterm"
)

// testCert is a self-signed certificate, generated for one run. It is its
// own root: a client trusts it by putting it in RootCAs.
type testCert struct {
	certPEM, keyPEM []byte
	pair            tls.Certificate
	pool            *x509.CertPool
}

// newTestCert makes a certificate for names (DNS names or IP addresses),
// as sluice makes its own default one.
func newTestCert(names ...string) (*testCert, error) {
	pair, err := tlsterm.SelfSigned(names, time.Now())
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	c := &testCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Certificate[0]}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pair:    *pair,
		pool:    x509.NewCertPool(),
	}
	c.pool.AddCert(pair.Leaf)
	return c, nil
}

// write saves the certificate and key as dir/name.pem and dir/name.key.
func (c *testCert) write(dir, name string) (certFile, keyFile string, err error) {
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, c.certPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("write certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, c.keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("write key: %w", err)
	}
	return certFile, keyFile, nil
}
