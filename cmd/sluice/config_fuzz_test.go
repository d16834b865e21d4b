package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sluice/l4"
)

// FuzzLoadConfig writes arbitrary bytes as a configuration file and checks
// it as "sluice -check" does: loadConfig, then, if that succeeds, l4.New
// (which validates and reads the certificate files named) and checkAdmin,
// never Listen. Whatever the bytes, the answer is a configuration or an
// error, never a panic, and every error names the file. Seeds: the shipped
// configs/*.toml and testdata/fuzz/FuzzLoadConfig.
func FuzzLoadConfig(f *testing.F) {
	shipped, err := filepath.Glob("../../configs/*.toml")
	if err != nil || len(shipped) == 0 {
		f.Fatalf("configs/*.toml: %v, %d files", err, len(shipped))
	}
	for _, name := range shipped {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(validConfig))
	// One file, rewritten for each input: a fuzzing process runs one
	// input at a time.
	path := filepath.Join(f.TempDir(), "fuzz.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, lines, err := loadConfig(path)
		if err == nil {
			if !safeFiles(cfg) {
				t.Skip("names a device or a /proc file as a certificate")
			}
			if _, err = l4.New(cfg, nil); err == nil {
				err = checkAdmin(cfg.Admin)
			}
			err = locate(path, lines, err)
		}
		if err == nil {
			return
		}
		for _, e := range flatten(err) {
			if !strings.Contains(e.Error(), path) {
				t.Errorf("error %q (%T) does not name the file", e, e)
			}
		}
	})
}

// safeFiles reports whether each file cfg names is missing or a regular file
// outside /proc and /sys: l4.New reads them whole, and /dev/zero, a FIFO or
// /proc/kmsg would never end.
func safeFiles(cfg *l4.Config) bool {
	var names []string
	for _, lc := range cfg.Listeners {
		if lc.TLS == nil {
			continue
		}
		names = append(names, lc.TLS.ClientCA)
		for _, c := range lc.TLS.Certificates {
			names = append(names, c.Cert, c.Key)
		}
	}
	for _, name := range names {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			continue // New reports it
		}
		abs, err := filepath.EvalSymlinks(name)
		if err == nil {
			abs, err = filepath.Abs(abs)
		}
		if err != nil {
			return false
		}
		if !fi.Mode().IsRegular() || strings.HasPrefix(abs, "/proc/") || strings.HasPrefix(abs, "/sys/") {
			return false
		}
	}
	return true
}
