package tlsterm

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
)

// TicketKeyLen is the size of a session ticket key: crypto/tls derives its
// AES and HMAC keys from 32 bytes.
const TicketKeyLen = 32

// maxTicketKeyBytes bounds a ticket key file: a key line is 45 bytes.
const maxTicketKeyBytes = 64 << 10

// MaxTicketKeys bounds the keys of a file: a ticket that none decrypts
// costs an HMAC per key, and a rotation needs three at most.
const MaxTicketKeys = 16

// TicketKeyError is a session ticket key file that cannot be used. Line
// is the line at fault, 0 for the file as a whole.
type TicketKeyError struct {
	File string
	Line int
	Err  error
}

func (e *TicketKeyError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	if msg := e.Err.Error(); strings.Contains(msg, e.File) {
		return msg // "stat FILE: no such file or directory"
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *TicketKeyError) Unwrap() error { return e.Err }

// ParseTicketKeys reads the contents b of the session ticket key file
// named file: one key per line, 32 bytes in standard base64 (`sluice
// ticket-key` prints one); blank lines and lines starting with # are let
// by. The first key encrypts new tickets and every key decrypts, as
// nginx's ssl_session_ticket_key files do: a key is added at the end
// (decrypt-only), later moved to the top (encrypting), and finally removed.
// A key listed twice counts once.
func ParseTicketKeys(file string, b []byte) ([][TicketKeyLen]byte, error) {
	var keys [][TicketKeyLen]byte
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(string(line))
		if err != nil {
			raw, err = base64.RawStdEncoding.DecodeString(string(line))
		}
		if err != nil {
			return nil, &TicketKeyError{File: file, Line: i + 1, Err: errors.New("not a base64 key: generate one with \"sluice ticket-key\" or \"openssl rand -base64 32\"")}
		}
		if len(raw) != TicketKeyLen {
			msg := fmt.Sprintf("a key of %d bytes; a key is %d bytes, base64-encoded (\"sluice ticket-key\" or \"openssl rand -base64 32\")", len(raw), TicketKeyLen)
			if len(raw) == 48 || len(raw) == 80 {
				msg += "; 48- and 80-byte keys are nginx's and HAProxy's, whose tickets crypto/tls cannot read anyway"
			}
			return nil, &TicketKeyError{File: file, Line: i + 1, Err: errors.New(msg)}
		}
		k := [TicketKeyLen]byte(raw)
		if slices.Contains(keys, k) {
			continue
		}
		if len(keys) == MaxTicketKeys {
			return nil, &TicketKeyError{File: file, Line: i + 1, Err: fmt.Errorf("more than %d keys: a rotation needs three at most (the encrypting key, the one before it, the next one)", MaxTicketKeys)}
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, &TicketKeyError{File: file, Err: errors.New("no key in it: expected one base64 key per line, the first encrypting")}
	}
	return keys, nil
}

// NewTicketKey returns a fresh key from rand, as a line of a key file.
func NewTicketKey(rand io.Reader) (string, error) {
	var k [TicketKeyLen]byte
	if _, err := io.ReadFull(rand, k[:]); err != nil {
		return "", fmt.Errorf("new ticket key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k[:]), nil
}

// TicketKeyID names a key in logs and metrics without giving it away: the
// first 8 hex digits of its SHA-256. Instances of a fleet that print the
// same ID encrypt with the same key.
func TicketKeyID(k [TicketKeyLen]byte) string {
	sum := sha256.Sum256(k[:])
	return hex.EncodeToString(sum[:4])
}

// TicketKeys is a session ticket key file put to work: the *tls.Config
// whose keys encrypt and decrypt the tickets of every listener that names
// the file, in this configuration and the next ones (Options.TicketKeys),
// so that instances sharing the file resume each other's sessions.
// Reload reads the file again; a file that cannot be used changes nothing.
type TicketKeys struct {
	file string
	cfg  *tls.Config // only its ticket keys are used

	mu    sync.Mutex
	keys  [][TicketKeyLen]byte // in use, the encrypting one first
	stamp fileStamp            // of the file as the last Reload or Use found it
	mode  fs.FileMode          // of the file the keys in use came from
}

// TicketKeySet is a key file's content, read and checked but not yet in
// use (TicketKeys.Use), so that a configuration reload can read every
// file before it knows it will go through.
type TicketKeySet struct {
	keys  [][TicketKeyLen]byte
	mode  fs.FileMode
	stamp fileStamp
}

// LoadTicketKeys reads file and returns its keys put to work, or a
// *TicketKeyError naming the file and the line at fault.
func LoadTicketKeys(file string) (*TicketKeys, error) {
	k := &TicketKeys{file: file, cfg: &tls.Config{}}
	set, err := k.Read()
	if err != nil {
		return nil, err
	}
	k.Use(set)
	return k, nil
}

// File returns the key file's name.
func (k *TicketKeys) File() string { return k.file }

// Config returns the config whose keys are the file's, for
// Options.TicketKeys.
func (k *TicketKeys) Config() *tls.Config { return k.cfg }

// IDs returns the TicketKeyID of each key in use, the encrypting one
// first.
func (k *TicketKeys) IDs() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	ids := make([]string, len(k.keys))
	for i, key := range k.keys {
		ids[i] = TicketKeyID(key)
	}
	return ids
}

// WorldReadable reports whether every user of the machine can read the
// file the keys in use came from: whoever reads the keys can decrypt the
// sessions they resume.
func (k *TicketKeys) WorldReadable() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.mode&0o004 != 0
}

// Changed reports whether the file is not what the last Reload (or Use)
// found: see fileStamp.
func (k *TicketKeys) Changed() bool {
	b, err := k.readFile()
	stamp := stampOf(k.file, b, err)
	k.mu.Lock()
	defer k.mu.Unlock()
	return stamp != k.stamp
}

// Read reads and checks the file, and changes nothing.
func (k *TicketKeys) Read() (*TicketKeySet, error) {
	set, err := k.read()
	if err != nil {
		return nil, err
	}
	return set, nil
}

// read is Read, which returns the stamp of what it read even when the
// file cannot be used: a change made after the read is seen again.
func (k *TicketKeys) read() (*TicketKeySet, error) {
	b, err := k.readFile()
	set := &TicketKeySet{stamp: stampOf(k.file, b, err)}
	if err != nil {
		return set, &TicketKeyError{File: k.file, Err: err}
	}
	if set.keys, err = ParseTicketKeys(k.file, b); err != nil {
		return set, err
	}
	if fi, err := os.Stat(k.file); err == nil {
		set.mode = fi.Mode().Perm()
	}
	return set, nil
}

// readFile reads the key file, as read and Changed both must, so that
// their stamps agree on a file that cannot be read.
func (k *TicketKeys) readFile() ([]byte, error) {
	return readBounded(k.file, maxTicketKeyBytes, "a session ticket key file")
}

// Use puts set, which Read returned, to work at once: tickets issued from
// now on are encrypted with its first key, and tickets of any of its keys
// resume. It reports whether the keys differ from those in use before.
func (k *TicketKeys) Use(set *TicketKeySet) (changed bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stamp, k.mode = set.stamp, set.mode
	if slices.Equal(set.keys, k.keys) {
		return false
	}
	// SetSessionTicketKeys also stops crypto/tls rotating keys itself.
	k.cfg.SetSessionTicketKeys(set.keys)
	k.keys = set.keys
	return true
}

// Reload reads the file again and, if it can be used, puts its keys to
// work (Read, then Use). On error the keys in use stay, and Changed is
// false until the file changes again.
func (k *TicketKeys) Reload() (changed bool, err error) {
	set, err := k.read()
	if err != nil {
		k.mu.Lock()
		k.stamp = set.stamp
		k.mu.Unlock()
		return false, err
	}
	return k.Use(set), nil
}
