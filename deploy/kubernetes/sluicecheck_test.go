package kubernetes

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// documentedSecrets are the Secrets README.md tells how to create, and
// their keys. The base does not carry them; TestSluiceCheck fills them with
// test data of the same form.
var documentedSecrets = map[string][]string{
	"sluice-tls":             {"tls.crt", "tls.key"}, // kubectl create secret tls
	"sluice-session-tickets": {"keys"},               // sluice ticket-key lines
}

// sluiceBinary returns $SLUICE_BIN (make deploy-check sets it to
// bin/sluice), or builds ../../cmd/sluice.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SLUICE_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	// go test puts its own Go first in PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go to build sluice with (or set SLUICE_BIN): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/sluice")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	return bin
}

// secretTestData makes the documented Secrets' contents: a certificate and
// key from `sluice cert`, and a ticket key file of two keys.
func secretTestData(t *testing.T, sluice string) map[string]map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cmd := exec.Command(sluice, "cert", "-names", "sluice.example.com", "-cert", cert, "-key", key)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sluice cert: %v\n%s", err, out)
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	keys := "# encrypting key first, then a decrypt-only one\n"
	for range 2 {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			t.Fatal(err)
		}
		keys += base64.StdEncoding.EncodeToString(k) + "\n"
	}
	return map[string]map[string][]byte{
		"sluice-tls":             {"tls.crt": read(cert), "tls.key": read(key)},
		"sluice-session-tickets": {"keys": []byte(keys)},
	}
}

// TestSluiceCheck runs `sluice -check` on sluice.toml as a pod of the
// Deployment would read it: the ConfigMap's file, and every file it names
// where the Deployment's volume mounts put the Secrets' keys, laid out
// under a temporary root (the paths in the file are moved under it). A
// path that no mount provides, a Secret key the volume does not project,
// a certificate and key that do not go together, or any key sluice does
// not accept fails here.
func TestSluiceCheck(t *testing.T) {
	m := buildBase(t)
	c := sluiceContainer(t, m)
	cfgPath, raw, cfg := loadConfig(t, m)
	sluice := sluiceBinary(t)
	secrets := secretTestData(t, sluice)

	root := t.TempDir()
	place := func(p string, data []byte) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range cfg.files() {
		src, err := resolveFile(m, c, f.path)
		if err != nil {
			t.Errorf("sluice.toml: %s = %q: %v", f.key, f.path, err)
			continue
		}
		var data []byte
		var ok bool
		switch src.kind {
		case "secret":
			data, ok = secrets[src.name][src.key]
		case "configMap":
			var s string
			if cm := m.configMaps[src.name]; cm != nil {
				s, ok = cm.Data[src.key]
			}
			data = []byte(s)
		}
		if !ok {
			t.Errorf("sluice.toml: %s = %q: %s %s has no key %q", f.key, f.path, src.kind, src.name, src.key)
			continue
		}
		place(f.path, data)
		n := 0
		for _, q := range []string{strconv.Quote(f.path), "'" + f.path + "'"} {
			n += strings.Count(raw, q)
			raw = strings.ReplaceAll(raw, q, strconv.Quote(filepath.Join(root, f.path)))
		}
		if n == 0 {
			t.Fatalf("sluice.toml: cannot find the string %q to move it under the test root", f.path)
		}
	}
	place(cfgPath, []byte(raw))

	out, err := exec.Command(sluice, "-check", "-config", filepath.Join(root, cfgPath)).CombinedOutput()
	if err != nil {
		t.Fatalf("sluice -check on sluice.toml as the pod sees it (paths moved under %s): %v\n%s", root, err, out)
	}
	if !strings.Contains(string(out), "is ok") {
		t.Errorf("sluice -check said:\n%s", out)
	}
	t.Logf("sluice -check: %s", strings.TrimSpace(string(out)))
}
