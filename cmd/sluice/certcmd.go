package main

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sluice/tlsterm"
)

// certMaxDays bounds -days: a test certificate needs no more, and the
// bound keeps NotAfter far from time.Duration's 292-year overflow.
const certMaxDays = 3650

// certOptions are the flags of "sluice cert".
type certOptions struct {
	names    string // comma-separated DNS names and IP addresses
	certFile string
	keyFile  string
	days     int
	force    bool
}

// newCertFlagSet defines the flags of "sluice cert" on a new flag set that
// prints its errors and usage to out.
func newCertFlagSet(o *certOptions, out io.Writer) *flag.FlagSet {
	flags := flag.NewFlagSet("sluice cert", flag.ContinueOnError)
	flags.SetOutput(out)
	flags.StringVar(&o.names, "names", "", "comma-separated DNS `names` and IP addresses the certificate is for (required), e.g. localhost,127.0.0.1")
	flags.StringVar(&o.certFile, "cert", "", "`file` to write the PEM certificate to (required)")
	flags.StringVar(&o.keyFile, "key", "", "`file` to write the PEM private key to, mode 0600 (required)")
	flags.IntVar(&o.days, "days", 365, "valid for `N` days from now, 1 to 3650")
	flags.BoolVar(&o.force, "force", false, "overwrite -cert and -key if they exist")
	flags.Usage = func() {
		fmt.Fprintln(out, "Usage: sluice cert -names NAMES -cert FILE -key FILE [-days N] [-force]")
		fmt.Fprintln(out, "\nWrites a self-signed ECDSA P-256 certificate and its key, for tests and the")
		fmt.Fprintln(out, "quickstart; clients must be told to trust it (curl --cacert FILE).")
		fmt.Fprintln(out)
		writeFlags(out, flags)
	}
	return flags
}

// runCert is "sluice cert": it writes a self-signed test certificate and
// its key, so that a TLS listener can be tried with nothing but sluice.
func runCert(args []string, stdout, stderr io.Writer, now time.Time) error {
	var o certOptions
	flags := newCertFlagSet(&o, stderr)
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("cert: unexpected argument %q", flags.Arg(0))
	}
	names, err := o.check()
	if err != nil {
		return fmt.Errorf("cert: %w", err)
	}
	certPEM, keyPEM, notAfter, err := selfSignedPEM(names, now, o.days)
	if err != nil {
		return fmt.Errorf("cert: %w", err)
	}
	// The key first: a certificate without its key is of no use, and a
	// failed run then leaves nothing that looks complete.
	if err := writeNew(o.keyFile, keyPEM, 0o600, o.force); err != nil {
		return fmt.Errorf("cert: write key: %w", err)
	}
	if err := writeNew(o.certFile, certPEM, 0o644, o.force); err != nil {
		return fmt.Errorf("cert: write certificate: %w", err)
	}
	fmt.Fprintf(stdout, "sluice: wrote certificate %s for %s, valid until %s, and its key %s\n",
		o.certFile, strings.Join(names, ", "), notAfter.UTC().Format(time.RFC3339), o.keyFile)
	return nil
}

// check validates the flags and returns the names, before anything is
// generated or written.
func (o *certOptions) check() ([]string, error) {
	var missing []string
	for _, f := range []struct{ name, value string }{{"-names", o.names}, {"-cert", o.certFile}, {"-key", o.keyFile}} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s (see sluice cert -h)", strings.Join(missing, ", "))
	}
	var names []string
	for n := range strings.SplitSeq(o.names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("-names %q: no name in it", o.names)
	}
	if o.days < 1 || o.days > certMaxDays {
		return nil, fmt.Errorf("-days %d: expected 1 to %d", o.days, certMaxDays)
	}
	if filepath.Clean(o.certFile) == filepath.Clean(o.keyFile) {
		return nil, fmt.Errorf("-cert and -key are both %s: they must be two files", o.certFile)
	}
	if !o.force {
		// Refuse before writing either file, so that a refusal leaves the
		// existing pair as it was.
		for _, f := range []string{o.keyFile, o.certFile} {
			if _, err := os.Lstat(f); err == nil {
				return nil, fmt.Errorf("%s exists; remove it or pass -force to overwrite it", f)
			}
		}
	}
	return names, nil
}

// selfSignedPEM makes the certificate and key as PEM. tlsterm.SelfSigned
// makes the key and the certificate sluice serves when a listener has none
// (the same names handling, the same profile) but fixes the validity at a
// year, so the certificate is signed again with NotAfter days from now.
func selfSignedPEM(names []string, now time.Time, days int) (certPEM, keyPEM []byte, notAfter time.Time, err error) {
	c, err := tlsterm.SelfSigned(names, now)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("make certificate: %w", err)
	}
	tmpl := *c.Leaf
	tmpl.NotAfter = now.Add(time.Duration(days) * 24 * time.Hour)
	key, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, time.Time{}, fmt.Errorf("make certificate: private key is a %T, not a crypto.Signer", c.PrivateKey)
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("sign certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, tmpl.NotAfter, nil
}

// writeNew writes data to a new file with mode perm. With force it first
// removes what is there, so the file gets perm even if an older one had a
// looser mode (OpenFile keeps an existing file's mode); without, O_EXCL
// refuses an existing file or symlink even if one appeared since check.
func writeNew(name string, data []byte, perm fs.FileMode, force bool) error {
	if force {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
