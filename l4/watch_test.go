package l4

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// watchEvents makes p report its file watcher's events.
func watchEvents(p *Proxy) <-chan string {
	events := make(chan string)
	p.mu.Lock()
	p.watched = events
	p.mu.Unlock()
	return events
}

// awaitEvent waits for the watcher event want; others are let by.
func awaitEvent(t *testing.T, events <-chan string, want string) {
	t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case e := <-events:
			if e == want {
				return
			}
		case <-timer.C:
			t.Fatalf("the file watcher did not report %q within %v", want, testTimeout)
		}
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

// TestWatchCertificates: a certificate renewed in a Kubernetes Secret
// volume is served from the next handshake on, with no signal; a broken
// one is refused with the file named, and the listener keeps serving the
// certificate it had; a repaired one is taken.
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
	cfg.WatchInterval = Duration{100 * time.Millisecond}
	p, addrs := w.serve(cfg)
	events := watchEvents(p)
	if got := servedSerial(w, addrs[0]); got != first {
		t.Fatalf("serial %s served at first, want %s", got, first)
	}

	files, renewed := pair()
	vol.swap(files)
	awaitEvent(t, events, watchCertsReloaded)
	if got := servedSerial(w, addrs[0]); got != renewed {
		t.Fatalf("serial %s served after the renewal, want %s", got, renewed)
	}

	vol.swap(map[string][]byte{"tls.crt": []byte("not a certificate"), "tls.key": files["tls.key"]})
	awaitEvent(t, events, watchCertsFailed)
	w.waitLog("certificate files changed and cannot be loaded", "listener[0].tls.certificates[0]", vol.path("tls.crt"))
	if got := servedSerial(w, addrs[0]); got != renewed {
		t.Fatalf("serial %s served after a broken renewal, want the one before, %s", got, renewed)
	}

	files, repaired := pair()
	vol.swap(files)
	awaitEvent(t, events, watchCertsReloaded)
	if got := servedSerial(w, addrs[0]); got != repaired {
		t.Fatalf("serial %s served after the repair, want %s", got, repaired)
	}
}

// TestWatchCertificatesHalfWritten: a certificate and its key replaced
// one after the other, as certbot swaps its links, are seen half done;
// that is tried again a round later rather than logged as an error.
func TestWatchCertificatesHalfWritten(t *testing.T) {
	w := newWorld(t)
	be := w.backend(echo)
	cfg := w.simple(be.addr())
	cfg.WatchInterval = Duration{100 * time.Millisecond}
	files := cfg.Listeners[0].TLS.Certificates[0]
	p, addrs := w.serve(cfg)
	events := watchEvents(p)

	cert, certPEM, keyPEM := issue(t, w.ca, w.caKey, "localhost", []string{"localhost"}, false)
	w.writeFile(files.Cert, certPEM) // the key is still the old one
	awaitEvent(t, events, watchRetry)
	w.writeFile(files.Key, keyPEM)
	awaitEvent(t, events, watchCertsReloaded)
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
		cfg.SessionTicketKeys = shared
		cfg.Listeners[0].TLS.SessionTicketKeys = listenerFile
		cfg.WatchInterval = Duration{100 * time.Millisecond}
		return cfg
	}
	a, addrA := w.serve(config(""))
	_, addrB := w.serve(config(""))
	_, addrC := w.serve(config(own))
	w.waitLog("session ticket key file is readable by every user", "file="+own)
	if strings.Contains(w.logs.String(), "readable by every user\" file="+shared) {
		t.Error("a warning that the 0600 key file is readable by every user")
	}
	resumes := func(cache tls.ClientSessionCache, addr string) bool {
		t.Helper()
		c := w.mustDialTLS(addr, &tls.Config{ClientSessionCache: cache})
		defer c.Close()
		readLine(t, c) // TLS 1.3 tickets arrive after the handshake
		return c.ConnectionState().DidResume
	}

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
	events := watchEvents(a)
	w.writeFile(shared, []byte(ticketKey(3)))
	awaitEvent(t, events, watchTicketsChanged)
	w.waitLog("session ticket keys changed", "file="+shared, "keys=1")
	if resumes(cache, addrA[0]) {
		t.Fatal("A resumed a session under the key its file no longer lists")
	}

	// A reload with a broken file is refused, naming it; the keys stay.
	w.writeFile(shared, []byte(ticketKey(3)+"oops!\n"))
	again := config("")
	again.Listeners[0].Address = "127.0.0.1:0" // as serve set it: the same socket
	_, err := a.Reload(t.Context(), again)
	if err == nil || !strings.Contains(err.Error(), "session_ticket_keys: "+shared+":2: not a base64 key") {
		t.Fatalf("Reload with a broken key file: %v", err)
	}
	cache = tls.NewLRUClientSessionCache(1)
	resumes(cache, addrA[0])
	if !resumes(cache, addrA[0]) {
		t.Fatal("A does not resume its own sessions after a refused reload")
	}
}
