package tlsterm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// The kernel's rec_seq must be the sequence number of the next record under
// each key, and crypto/tls has used some already: a TLS 1.3 server sends
// its session tickets under the traffic key inside Handshake (with a
// client certificate, after the client's Finished), and in TLS 1.2 either
// side's Finished is the first record under the new keys. Rather than
// assume those numbers, they are counted from the records RecordConn
// copied: what crypto/tls does in a future release is then still right.

// count12 counts the records after the last ChangeCipherSpec, which in TLS
// 1.2 is where the keys change and the sequence number starts at 0. From
// the client, those may only be handshake records (its Finished): an
// application data record means crypto/tls read past the handshake.
func count12(records []record, fromClient bool) (uint64, error) {
	ccs := -1
	for i := range records {
		if records[i].typ() == recordTypeChangeCipherSpec {
			ccs = i
		}
	}
	if ccs < 0 {
		return 0, errors.New("no ChangeCipherSpec")
	}
	after := records[ccs+1:]
	for i := range after {
		switch t := after[i].typ(); {
		case t == recordTypeAlert:
			return 0, errors.New("alert sent after ChangeCipherSpec")
		case fromClient && t != recordTypeHandshake:
			return 0, fmt.Errorf("crypto/tls already read a record of type %d", t)
		}
	}
	return uint64(len(after)), nil
}

// count13 counts the records protected with ci's key (at sequence 0):
// every TLS 1.3 record after the ServerHello is encrypted and looks alike
// on the wire, so each is tried in turn. Those under the handshake key
// fail to open; the first that opens is number 0, and all after it must
// open in sequence, or the key changed (a KeyUpdate) and the count is
// unknown.
func count13(records []record, ci *CryptoInfo) (uint64, error) {
	var aead cipher.AEAD
	var seq uint64
	started := false
	for i := range records {
		r := &records[i]
		if r.typ() != recordTypeApplicationData {
			continue // ClientHello, ServerHello, compatibility ChangeCipherSpec
		}
		if aead == nil {
			var err error
			if aead, err = recordAEAD(ci.CipherType, ci.Key); err != nil {
				return 0, err
			}
		}
		_, err := aead.Open(nil, nonce13(ci.nonceBase(), seq), r.body, r.header[:])
		switch {
		case err == nil:
			started = true
			seq++
		case started:
			return 0, fmt.Errorf("record %d under the traffic key does not open", seq)
		}
	}
	return seq, nil
}

// nonce13 is base XOR the big-endian sequence number (RFC 8446 §5.3), as
// the kernel computes it.
func nonce13(base []byte, seq uint64) []byte {
	n := bytes.Clone(base)
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	for i := range s {
		n[len(n)-8+i] ^= s[i]
	}
	return n
}

// recordAEAD is the AEAD of a kernel cipher type, to count TLS 1.3
// records by trial decryption.
func recordAEAD(cipherType uint16, key []byte) (cipher.AEAD, error) {
	switch cipherType {
	case tlsCipherAESGCM128, tlsCipherAESGCM256:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("aes: %w", err)
		}
		return cipher.NewGCM(b)
	case tlsCipherChaCha20Poly1305:
		return chacha20poly1305.New(key)
	}
	return nil, fmt.Errorf("no AEAD for cipher %d", cipherType)
}

// serverRandom reads the random of the plaintext ServerHello, the first
// handshake message the server wrote. TLS 1.2's key block needs it and the
// key log does not have it.
func serverRandom(out []record) ([]byte, error) {
	var hs []byte
	for i := range out {
		if out[i].typ() == recordTypeChangeCipherSpec {
			break
		}
		if out[i].typ() == recordTypeHandshake {
			hs = append(hs, out[i].body...)
		}
	}
	// msg_type 2, uint24 length, legacy_version, random[32]
	const serverHello = 2
	if len(hs) < 4+2+32 || hs[0] != serverHello {
		return nil, errors.New("no ServerHello sent")
	}
	return hs[6 : 6+32], nil
}
