package tlsterm_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/tlsterm"
)

// key returns a key line of 32 bytes of b.
func key(b byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, tlsterm.TicketKeyLen))
}

func TestParseTicketKeys(t *testing.T) {
	raw := strings.TrimRight(key(3), "=")
	tests := []struct {
		name     string
		file     string
		want     []byte // first byte of each key, in order
		wantLine int    // of the *TicketKeyError; -1: no error
		wantErr  string
	}{
		{"one", key(1) + "\n", []byte{1}, -1, ""},
		{"comments, blanks, CRLF, no final newline", "# rotation: newest last\n\n" + key(1) + "\r\n  " + key(2) + "  \r\n# old\n" + key(3), []byte{1, 2, 3}, -1, ""},
		{"unpadded", raw, []byte{3}, -1, ""},
		{"a key twice counts once", key(1) + "\n" + key(2) + "\n" + key(1) + "\n", []byte{1, 2}, -1, ""},
		{"not base64", key(1) + "\n\nnot a key!\n", nil, 3, "not a base64 key"},
		{"short", key(1) + "\n" + base64.StdEncoding.EncodeToString([]byte("sixteen bytes...")) + "\n", nil, 2, "a key of 16 bytes"},
		{"HAProxy's 80 bytes", base64.StdEncoding.EncodeToString(make([]byte, 80)), nil, 1, "nginx's and HAProxy's"},
		{"empty", "", nil, 0, "no key in it"},
		{"only comments", "# a\n\n# b\n", nil, 0, "no key in it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := tlsterm.ParseTicketKeys("keys.txt", []byte(tt.file))
			if tt.wantLine < 0 {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				var got []byte
				for _, k := range keys {
					got = append(got, k[0])
				}
				if !bytes.Equal(got, tt.want) {
					t.Fatalf("keys starting %v, want %v", got, tt.want)
				}
				return
			}
			var ke *tlsterm.TicketKeyError
			if !errors.As(err, &ke) || ke.Line != tt.wantLine || ke.File != "keys.txt" || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want a *TicketKeyError for keys.txt line %d saying %q", err, tt.wantLine, tt.wantErr)
			}
		})
	}
}

func TestNewTicketKey(t *testing.T) {
	line, err := tlsterm.NewTicketKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tlsterm.ParseTicketKeys("new", []byte(line))
	if err != nil || len(keys) != 1 || keys[0][31] != 7 {
		t.Fatalf("ParseTicketKeys(%q) = %v, %v; want the key of 7s", line, keys, err)
	}
	if _, err := tlsterm.NewTicketKey(bytes.NewReader(nil)); err == nil {
		t.Fatal("no error from an empty source of randomness")
	}
}

// instance is one sluice's server config, given the key file (or none).
func instance(t *testing.T, store *tlsterm.Store, keyFile string) (*tls.Config, *tlsterm.TicketKeys) {
	t.Helper()
	o := tlsterm.Options{SessionTicketLifetime: time.Hour}
	var tk *tlsterm.TicketKeys
	if keyFile != "" {
		var err error
		if tk, err = tlsterm.LoadTicketKeys(keyFile); err != nil {
			t.Fatal(err)
		}
		o.TicketKeys = tk.Config()
	}
	return tlsterm.NewConfig(store, o), tk
}

// ticketFrom connects client to srv for a ticket, and returns whether that
// connection resumed.
func ticketFrom(t *testing.T, srv *server, client *tls.Config) bool {
	t.Helper()
	c, state := srv.mustConnect(t, client)
	echo(t, c) // a TLS 1.3 ticket arrives after the handshake; reading processes it
	c.Close()
	return state.DidResume
}

// TestTicketKeysAcrossInstances: two configs built apart, as two processes
// would, resume each other's sessions when they read the same key file,
// and not when they read different ones or none.
func TestTicketKeysAcrossInstances(t *testing.T) {
	ca := newCA(t, "test CA")
	const name = "example.com"
	dir := t.TempDir()
	f, _ := ca.leaf(t, dir, "a", "a", ecdsaKey, name)
	store := newStore(t, f)
	shared := filepath.Join(dir, "shared")
	writeFile(t, shared, []byte(key(1)+"\n"+key(2)+"\n"))
	other := filepath.Join(dir, "other")
	writeFile(t, other, []byte(key(3)+"\n"))

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tt := range []struct {
			name       string
			a, b       string
			wantResume bool
		}{
			{"same file", shared, shared, true},
			{"different files", shared, other, false},
			{"no file", "", "", false},
		} {
			t.Run(versionLabel(v)+" "+tt.name, func(t *testing.T) {
				cfgA, _ := instance(t, store, tt.a)
				cfgB, _ := instance(t, store, tt.b)
				a, b := serve(t, cfgA), serve(t, cfgB)
				client := resumeClient(ca, name, v)
				if ticketFrom(t, a, client) {
					t.Fatal("the first connection resumed")
				}
				if got := ticketFrom(t, b, client); got != tt.wantResume {
					t.Fatalf("resumed on the other instance: %v, want %v", got, tt.wantResume)
				}
			})
		}
	}
}

// TestTicketKeyRotation walks the rotation the README describes: a new key
// added last decrypts only, moved first it encrypts, and the retired key's
// tickets no longer resume. A file that cannot be used changes nothing.
func TestTicketKeyRotation(t *testing.T) {
	ca := newCA(t, "test CA")
	const name = "example.com"
	dir := t.TempDir()
	f, _ := ca.leaf(t, dir, "a", "a", ecdsaKey, name)
	store := newStore(t, f)
	file := filepath.Join(dir, "keys")
	writeFile(t, file, []byte(key(1)+"\n"))
	cfg, tk := instance(t, store, file)
	srv := serve(t, cfg)
	// Two clients with a ticket under key 1; each keeps one ticket, the
	// last it got. old goes on getting key 1's; mid resumes once key 2
	// encrypts, and so gets one of key 2's.
	old, mid := resumeClient(ca, name, 0), resumeClient(ca, name, 0)
	ticketFrom(t, srv, old)
	ticketFrom(t, srv, mid)

	reload := func(content string, wantChanged bool) {
		t.Helper()
		writeFile(t, file, []byte(content))
		if !tk.Changed() {
			t.Fatal("Changed() = false after the file was rewritten")
		}
		changed, err := tk.Reload()
		if err != nil || changed != wantChanged {
			t.Fatalf("Reload() = %v, %v; want %v, nil", changed, err, wantChanged)
		}
		if tk.Changed() {
			t.Fatal("Changed() = true right after Reload")
		}
	}
	id := func(b byte) string { return tlsterm.TicketKeyID([32]byte(bytes.Repeat([]byte{b}, 32))) }

	reload(key(1)+"\n"+key(2)+"\n", true) // 2 added, decrypt-only
	if got := tk.IDs(); len(got) != 2 || got[0] != id(1) {
		t.Fatalf("IDs() = %v, want key 1's (%s) first of 2", got, id(1))
	}
	if !ticketFrom(t, srv, old) { // and gets a new ticket, still under key 1
		t.Fatal("a key 1 ticket did not resume with key 2 added")
	}
	reload(key(2)+"\n"+key(1)+"\n", true) // 2 promoted
	if !ticketFrom(t, srv, mid) {
		t.Fatal("a key 1 ticket did not resume once key 2 was promoted")
	}

	// A broken file keeps the keys in use.
	writeFile(t, file, []byte("not a key!\n"))
	if _, err := tk.Reload(); err == nil || !strings.Contains(err.Error(), file+":1: not a base64 key") {
		t.Fatalf("Reload of a broken file: %v, want an error naming %s:1", err, file)
	}
	if got := tk.IDs(); len(got) != 2 || got[0] != id(2) {
		t.Fatalf("IDs() = %v after a failed reload, want the keys as they were", got)
	}
	if tk.Changed() {
		t.Fatal("Changed() = true after a failed reload of the same file: it would be retried, and logged, every round")
	}

	reload(key(2)+"\n", true) // 1 retired
	if ticketFrom(t, srv, old) {
		t.Fatal("a ticket of the retired key 1 resumed")
	}
	if !ticketFrom(t, srv, mid) {
		t.Fatal("a key 2 ticket did not resume")
	}
	reload("# same key, new comment\n"+key(2)+"\n", false)
}

// TestTicketKeysSymlinkSwap: Kubernetes updates a Secret volume by
// pointing its ..data symlink at a new directory; the key file's name
// stays, and Changed must see the swap.
func TestTicketKeysSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Same size and, as far as the file system can tell, same age.
	writeFile(t, filepath.Join(dir, "v1", "keys"), []byte(key(1)+"\n"))
	writeFile(t, filepath.Join(dir, "v2", "keys"), []byte(key(2)+"\n"))
	fi, err := os.Stat(filepath.Join(dir, "v1", "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(dir, "v2", "keys"), fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "keys"), filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	tk, err := tlsterm.LoadTicketKeys(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	// The swap, atomically, as the kubelet does it.
	if err := os.Symlink("v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if !tk.Changed() {
		t.Fatal("Changed() = false after the ..data symlink swap")
	}
	if changed, err := tk.Reload(); !changed || err != nil {
		t.Fatalf("Reload() = %v, %v; want true, nil", changed, err)
	}
	if got, want := tk.IDs()[0], tlsterm.TicketKeyID([32]byte(bytes.Repeat([]byte{2}, 32))); got != want {
		t.Fatalf("encrypting key %s, want v2's %s", got, want)
	}
}

// TestStoreChanged: a certificate rewritten in place is seen as a change
// until the store reloads it, whether the reload works or not.
func TestStoreChanged(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	f, _ := ca.leaf(t, dir, "a", "a", ecdsaKey, "example.com")
	store := newStore(t, f)
	if store.Changed() {
		t.Fatal("Changed() = true right after NewStore")
	}
	g, _ := ca.leaf(t, t.TempDir(), "a", "b", ecdsaKey, "example.com")
	for _, name := range []string{g.Cert, g.Key} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		dst := f.Cert
		if name == g.Key {
			dst = f.Key
		}
		writeFile(t, dst, b)
	}
	if !store.Changed() {
		t.Fatal("Changed() = false after the pair was rewritten")
	}
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if store.Changed() {
		t.Fatal("Changed() = true after Reload")
	}
	writeFile(t, f.Key, []byte("broken"))
	if err := store.Reload(); err == nil {
		t.Fatal("Reload of a broken key: no error")
	}
	if store.Changed() {
		t.Fatal("Changed() = true after a failed Reload of the same files: it would be retried, and logged, every round")
	}
}

// TestTicketKeysReadUse: Read checks a file and changes nothing; Use puts
// what it read to work. A file past MaxTicketKeys is refused, naming the
// line; an unreadable one is named once.
func TestTicketKeysReadUse(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	writeFile(t, file, []byte(key(1)))
	tk, err := tlsterm.LoadTicketKeys(file)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, file, []byte(key(2)+"\n"+key(1)+"\n"))
	set, err := tk.Read()
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.IDs(); len(got) != 1 {
		t.Fatalf("IDs() = %v after Read, want the one key in use", got)
	}
	if !tk.Changed() {
		t.Fatal("Changed() = false after a Read that was not used")
	}
	if !tk.Use(set) || len(tk.IDs()) != 2 || tk.Changed() {
		t.Fatalf("after Use: IDs() = %v, Changed() = %v; want 2 keys, false", tk.IDs(), tk.Changed())
	}

	var many strings.Builder
	for i := range tlsterm.MaxTicketKeys + 1 {
		many.WriteString(key(byte(i+1)) + "\n")
	}
	writeFile(t, file, []byte(many.String()))
	var ke *tlsterm.TicketKeyError
	if _, err := tk.Read(); !errors.As(err, &ke) || ke.Line != tlsterm.MaxTicketKeys+1 {
		t.Fatalf("Read of %d keys: %v, want a *TicketKeyError at line %d", tlsterm.MaxTicketKeys+1, err, tlsterm.MaxTicketKeys+1)
	}
	os.Remove(file)
	if _, err := tk.Read(); err == nil || strings.Count(err.Error(), file) != 1 {
		t.Fatalf("Read of a missing file: %v, want the file named once", err)
	}
}

// TestTicketKeysTooLarge: a file past the key file bound fails, and stays
// unchanged (as far as Changed can tell) until it changes again, so that
// the watcher logs it once rather than taking it for new every round.
func TestTicketKeysTooLarge(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	writeFile(t, file, []byte(key(1)+"\n"))
	tk, err := tlsterm.LoadTicketKeys(file)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, file, bytes.Repeat([]byte("# padding\n"), 10<<10))
	if _, err := tk.Reload(); err == nil || !strings.Contains(err.Error(), "larger than 64 KiB") {
		t.Fatalf("Reload of a 100 KiB file: %v, want larger than 64 KiB", err)
	}
	if tk.Changed() {
		t.Fatal("Changed() = true right after a failed Reload of the same file")
	}
}
