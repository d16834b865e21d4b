package kubernetes

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	corev1 "k8s.io/api/core/v1"
)

// sluiceConfig is the part of sluice.toml these checks tie to the
// manifests. It is read loosely: `sluice -check` (sluicecheck_test.go)
// reads the whole file strictly.
type sluiceConfig struct {
	Grace             duration `toml:"grace"`
	DrainTimeout      duration `toml:"drain_timeout"`
	SessionTicketKeys string   `toml:"session_ticket_keys"`
	Admin             struct {
		Address string `toml:"address"`
	} `toml:"admin"`
	Listeners []struct {
		Name           string   `toml:"name"`
		Address        string   `toml:"address"`
		AcceptProxy    bool     `toml:"accept_proxy"`
		TrustedProxies []string `toml:"trusted_proxies"`
		MaxConnections int      `toml:"max_connections"`
		TLS            *struct {
			Certificates []struct {
				Cert string `toml:"cert"`
				Key  string `toml:"key"`
			} `toml:"certificates"`
			ClientCA          string `toml:"client_ca"`
			SessionTicketKeys string `toml:"session_ticket_keys"`
		} `toml:"tls"`
	} `toml:"listener"`
}

// sluice's default drain_timeout when the file sets none.
const defaultDrainTimeout = 30 * time.Second

type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

func (c *sluiceConfig) drainTimeout() time.Duration {
	if c.DrainTimeout.Duration == 0 {
		return defaultDrainTimeout
	}
	return c.DrainTimeout.Duration
}

// configFile is a file sluice.toml names, and the key that names it.
type configFile struct {
	key, path string
	secret    bool // must come from a Secret: private keys, ticket keys
}

// files lists every file path in the configuration.
func (c *sluiceConfig) files() []configFile {
	var fs []configFile
	if c.SessionTicketKeys != "" {
		fs = append(fs, configFile{"session_ticket_keys", c.SessionTicketKeys, true})
	}
	for i, l := range c.Listeners {
		if l.TLS == nil {
			continue
		}
		p := fmt.Sprintf("listener[%d].tls.", i)
		for j, cert := range l.TLS.Certificates {
			fs = append(fs,
				configFile{fmt.Sprintf("%scertificates[%d].cert", p, j), cert.Cert, false},
				configFile{fmt.Sprintf("%scertificates[%d].key", p, j), cert.Key, true})
		}
		if l.TLS.ClientCA != "" {
			fs = append(fs, configFile{p + "client_ca", l.TLS.ClientCA, false})
		}
		if l.TLS.SessionTicketKeys != "" {
			fs = append(fs, configFile{p + "session_ticket_keys", l.TLS.SessionTicketKeys, true})
		}
	}
	return fs
}

// tcpPort returns the port of a "host:port" address, or 0 for a unix one.
func tcpPort(addr string) (host string, port int, err error) {
	if strings.HasPrefix(addr, "unix:") {
		return "", 0, nil
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err = strconv.Atoi(p)
	return host, port, err
}

// loadConfig finds the file the sluice container is started with, in the
// ConfigMap mounted there, and parses it.
func loadConfig(t *testing.T, m *manifests) (path string, raw string, cfg *sluiceConfig) {
	t.Helper()
	c := sluiceContainer(t, m)
	path = configPath(c)
	src, err := resolveFile(m, c, path)
	if err != nil {
		t.Fatalf("container %s: -config %s: %v", c.Name, path, err)
	}
	if src.kind != "configMap" {
		t.Fatalf("container %s: -config %s comes from %s %s, want the ConfigMap", c.Name, path, src.kind, src.name)
	}
	cm, ok := m.configMaps[src.name]
	if !ok {
		t.Fatalf("container %s: -config %s: no ConfigMap %s in the build", c.Name, path, src.name)
	}
	raw, ok = cm.Data[src.key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", src.name, src.key)
	}
	cfg = new(sluiceConfig)
	if _, err := toml.Decode(raw, cfg); err != nil {
		t.Fatalf("ConfigMap %s, %s: %v", src.name, src.key, err)
	}
	return path, raw, cfg
}

// configPath is the -config argument of the container, or sluice's
// default (the image's CMD gives the same).
func configPath(c *corev1.Container) string {
	args := append(append([]string{}, c.Command...), c.Args...)
	for i, a := range args {
		a = strings.TrimPrefix(a, "-")
		switch {
		case (a == "config" || a == "-config") && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, "config="), strings.HasPrefix(a, "-config="):
			return a[strings.Index(a, "=")+1:]
		}
	}
	return "/etc/sluice/sluice.toml"
}
