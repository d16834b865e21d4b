package l4

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/tlsterm"
)

// hourly is the longest watch_interval: the watcher's own rounds never
// come during a test, which runs rounds itself (checkFiles).
var hourly = Duration{time.Hour}

// expectEvents runs a round of the file watcher and checks what it did.
func expectEvents(t *testing.T, p *Proxy, want ...string) {
	t.Helper()
	if got := p.checkFiles(); !slices.Equal(got, want) {
		t.Fatalf("file watcher round: %q, want %q", got, want)
	}
}

// secretVolume lays out files as the kubelet does a Secret volume: each
// name a symlink into ..data, itself a symlink to a directory of the
// current version. swap makes a new version current, atomically.
type secretVolume struct {
	t   *testing.T
	dir string
	n   int
}

func newSecretVolume(t *testing.T, files map[string][]byte) *secretVolume {
	v := &secretVolume{t: t, dir: t.TempDir()}
	v.swap(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func (v *secretVolume) swap(files map[string][]byte) {
	v.t.Helper()
	v.n++
	version := filepath.Join(v.dir, ".."+time.Now().Format("2006_01_02_15_04_05")+"."+string(rune('a'+v.n)))
	if err := os.Mkdir(version, 0o700); err != nil {
		v.t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(version, name), b, 0o600); err != nil {
			v.t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(version), tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
}

func (v *secretVolume) path(name string) string { return filepath.Join(v.dir, name) }

// servedSerial returns the serial number of the certificate addr serves.
func servedSerial(w *world, addr string) string {
	w.t.Helper()
	c := w.mustDialTLS(addr, nil)
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestWatchFilesRuns: the watcher runs by itself, at the interval of the
// running configuration, which a reload changes at once.
func TestWatchFilesRuns(t *testing.T) {
	w := newWorld(t)
	be := w.backend(echo)
	cfg := w.simple(be.addr())
	cfg.WatchInterval = hourly
	p, addrs := w.serve(cfg)
	again := w.simple(be.addr())
	again.Listeners[0].Address = "127.0.0.1:0" // as serve set it: the same socket
	again.Listeners[0].TLS = cfg.Listeners[0].TLS
	again.WatchInterval = Duration{100 * time.Millisecond}
	reload(t, p, again)

	cert, certPEM, keyPEM := issue(t, w.ca, w.caKey, "localhost", []string{"localhost"}, false)
	dir := t.TempDir()
	w.writeFile(filepath.Join(dir, "c"), certPEM)
	w.writeFile(filepath.Join(dir, "k"), keyPEM)
	// Renamed over the configured files: each is whole at any time.
	files := cfg.Listeners[0].TLS.Certificates[0]
	if err := os.Rename(filepath.Join(dir, "k"), files.Key); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "c"), files.Cert); err != nil {
		t.Fatal(err)
	}
	w.waitLog("certificates reloaded: their files changed", "listener=test")
	if got, want := servedSerial(w, addrs[0]), cert.Leaf.SerialNumber.String(); got != want {
		t.Fatalf("serial %s served, want the new certificate's, %s", got, want)
	}
}

// TestWatchCertificates: a certificate renewed in a Kubernetes Secret
// volume is served from the next handshake on, with no signal; a broken
// one is logged (once, naming the file, after a round's grace) and the
// listener keeps serving the certificate it had, trying the files every
// round; a repaired one is taken.
func TestWatchCertificates(t *testing.T) {
	w := newWorld(t)
	be := w.backend(echo)
	pair := func() (map[string][]byte, string) {
		cert, certPEM, keyPEM := issue(t, w.ca, w.caKey, "localhost", []string{"localhost"}, false)
		return map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}, cert.Leaf.SerialNumber.String()
	}
	files, first := pair()
	vol := newSecretVolume(t, files)
	cfg := w.simple(be.addr())
	cfg.Listeners[0].TLS.Certificates = []CertConfig{{Cert: vol.path("tls.crt"), Key: vol.path("tls.key")}}
	cfg.WatchInterval = hourly
	p, addrs := w.serve(cfg)
	expectEvents(t, p) // nothing changed
	if got := servedSerial(w, addrs[0]); got != first {
		t.Fatalf("serial %s served at first, want %s", got, first)
	}

	files, renewed := pair()
	vol.swap(files)
	expectEvents(t, p, watchCertsReloaded)
	if got := servedSerial(w, addrs[0]); got != renewed {
		t.Fatalf("serial %s served after the renewal, want %s", got, renewed)
	}
	expectEvents(t, p)

	vol.swap(map[string][]byte{"tls.crt": []byte("not a certificate"), "tls.key": files["tls.key"]})
	expectEvents(t, p, watchRetry)
	if strings.Contains(w.logs.String(), "cannot be loaded") {
		t.Fatal("a failure logged at once, without a round's grace")
	}
	expectEvents(t, p, watchCertsFailed)
	w.waitLog("certificate files changed and cannot be loaded", "listener[0].tls.certificates[0]", vol.path("tls.crt"))
	expectEvents(t, p, watchRetry) // tried every round, logged once
	if n := strings.Count(w.logs.String(), "cannot be loaded"); n != 1 {
		t.Fatalf("the failure logged %d times, want once", n)
	}
	if got := servedSerial(w, addrs[0]); got != renewed {
		t.Fatalf("serial %s served after a broken renewal, want the one before, %s", got, renewed)
	}

	files, repaired := pair()
	vol.swap(files)
	expectEvents(t, p, watchCertsReloaded)
	if got := servedSerial(w, addrs[0]); got != repaired {
		t.Fatalf("serial %s served after the repair, want %s", got, repaired)
	}
	expectEvents(t, p)
}

// TestWatchCertificatesHalfWritten: a certificate and its key replaced
// one after the other, as certbot swaps its links, are seen half done;
// that is tried again a round later rather than logged as an error.
func TestWatchCertificatesHalfWritten(t *testing.T) {
	w := newWorld(t)
	be := w.backend(echo)
	cfg := w.simple(be.addr())
	cfg.WatchInterval = hourly
	files := cfg.Listeners[0].TLS.Certificates[0]
	p, addrs := w.serve(cfg)

	cert, certPEM, keyPEM := issue(t, w.ca, w.caKey, "localhost", []string{"localhost"}, false)
	w.writeFile(files.Cert, certPEM) // the key is still the old one
	expectEvents(t, p, watchRetry)
	w.writeFile(files.Key, keyPEM)
	expectEvents(t, p, watchCertsReloaded)
	if got, want := servedSerial(w, addrs[0]), cert.Leaf.SerialNumber.String(); got != want {
		t.Fatalf("serial %s served, want the new certificate's, %s", got, want)
	}
	if strings.Contains(w.logs.String(), "cannot be loaded") {
		t.Errorf("a half-written pair was logged as an error:\n%s", w.logs.String())
	}
}

// ticketKey returns a key file line: 32 bytes of b.
func ticketKey(b byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) + "\n"
}

// TestTicketKeysAcrossProxies: two sluice instances given the same key
// file resume each other's sessions; a listener naming its own file
// overrides the top-level one; a key file changed under a running proxy
// is taken, and a broken one refused by a reload, with file and line.
func TestTicketKeysAcrossProxies(t *testing.T) {
	w := newWorld(t)
	be := w.backend(tagged("app"))
	shared := filepath.Join(w.dir, "shared.keys")
	w.writeFile(shared, []byte(ticketKey(1)))
	own := filepath.Join(w.dir, "own.keys")
	w.writeFile(own, []byte(ticketKey(2)))
	if err := os.Chmod(own, 0o644); err != nil {
		t.Fatal(err)
	}
	config := func(listenerFile string) *Config {
		cfg := w.simple(be.addr())
		if listenerFile == "" {
			cfg.SessionTicketKeys = shared
		}
		cfg.Listeners[0].TLS.SessionTicketKeys = listenerFile
		cfg.WatchInterval = hourly
		return cfg
	}
	a, addrA := w.serve(config(""))
	_, addrB := w.serve(config(""))
	_, addrC := w.serve(config(own))
	w.waitLog("session ticket key file is readable by every user", "file="+own)
	for _, l := range strings.Split(w.logs.String(), "\n") {
		if strings.Contains(l, "readable by every user") && strings.Contains(l, "file="+shared) {
			t.Errorf("a warning that the 0600 key file is readable by every user: %s", l)
		}
	}
	resumes := func(cache tls.ClientSessionCache, addr string) bool {
		t.Helper()
		c := w.mustDialTLS(addr, &tls.Config{ClientSessionCache: cache})
		defer c.Close()
		readLine(t, c) // TLS 1.3 tickets arrive after the handshake
		return c.ConnectionState().DidResume
	}
	encrypting := func() string {
		t.Helper()
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.gen.ticketKeys[shared].IDs()[0]
	}
	id := func(b byte) string { return tlsterm.TicketKeyID([32]byte(bytes.Repeat([]byte{b}, 32))) }

	cache := tls.NewLRUClientSessionCache(1)
	resumes(cache, addrA[0])
	if !resumes(cache, addrB[0]) {
		t.Fatal("a session from instance A did not resume on B, which has the same key file")
	}
	if resumes(cache, addrC[0]) {
		t.Fatal("a session resumed on C, whose listener names a key file of its own")
	}

	// The file changes under A: key 3 encrypts, key 1 is retired.
	cache = tls.NewLRUClientSessionCache(1)
	resumes(cache, addrA[0]) // a ticket under key 1
	w.writeFile(shared, []byte(ticketKey(3)))
	expectEvents(t, a, watchTicketsChanged)
	w.waitLog("session ticket keys changed", "file="+shared, "keys=1", "encrypting="+id(3))
	if resumes(cache, addrA[0]) {
		t.Fatal("A resumed a session under the key its file no longer lists")
	}
	expectEvents(t, a)

	again := config("")
	again.Listeners[0].Address = "127.0.0.1:0" // as serve set it: the same socket

	// A reload with a broken file is refused, naming it; the keys stay.
	w.writeFile(shared, []byte(ticketKey(3)+"oops!\n"))
	_, err := a.Reload(t.Context(), again)
	if err == nil || !strings.Contains(err.Error(), "session_ticket_keys: "+shared+":2: not a base64 key") {
		t.Fatalf("Reload with a broken key file: %v", err)
	}
	cache = tls.NewLRUClientSessionCache(1)
	resumes(cache, addrA[0])
	if !resumes(cache, addrA[0]) {
		t.Fatal("A does not resume its own sessions after a refused reload")
	}

	// A reload refused for another reason leaves the keys alone too,
	// though the file it read has a new one.
	w.writeFile(shared, []byte(ticketKey(4)+ticketKey(3)))
	broken := config("")
	broken.Listeners[0].Address = "127.0.0.1:0"
	broken.Listeners[0].TLS.Certificates[0].Cert = filepath.Join(w.dir, "missing.pem")
	if _, err := a.Reload(t.Context(), broken); err == nil {
		t.Fatal("Reload with a missing certificate: no error")
	}
	if got := encrypting(); got != id(3) {
		t.Fatalf("encrypting key %s after a refused reload, want key 3's, %s", got, id(3))
	}
	// One that goes through puts the file to work.
	reload(t, a, again)
	if got := encrypting(); got != id(4) {
		t.Fatalf("encrypting key %s after the reload, want key 4's, %s", got, id(4))
	}
	if !resumes(cache, addrA[0]) {
		t.Fatal("a key 3 ticket did not resume with key 4 added before it")
	}
}
