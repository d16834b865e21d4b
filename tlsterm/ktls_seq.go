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
// 1.2 is where the keys change and the sequence number starts at 0, and
// the plaintext bytes of the application data among them. From the server
// those are its Finished; from the client, its Finished and whatever
// crypto/tls read after the handshake (a peek at the request head).
func count12(records []record, p suiteParams) (seq uint64, appBytes int64, err error) {
	ccs := -1
	for i := range records {
		if records[i].typ() == recordTypeChangeCipherSpec {
			ccs = i
		}
	}
	if ccs < 0 {
		return 0, 0, errors.New("no ChangeCipherSpec")
	}
	// GCM records carry an 8-byte explicit nonce and a 16-byte tag,
	// ChaCha20-Poly1305 records only the tag (RFC 5288, RFC 7905).
	overhead := 8 + 16
	if p.cipherType == tlsCipherChaCha20Poly1305 {
		overhead = 16
	}
	after := records[ccs+1:]
	for i := range after {
		switch t := after[i].typ(); t {
		case recordTypeHandshake:
		case recordTypeApplicationData:
			if len(after[i].body) < overhead {
				return 0, 0, fmt.Errorf("record %d too short", i)
			}
			appBytes += int64(len(after[i].body) - overhead)
		default:
			return 0, 0, fmt.Errorf("a record of type %d after ChangeCipherSpec", t)
		}
	}
	return uint64(len(after)), appBytes, nil
}

// count13 counts the records protected with ci's key (at sequence 0), and
// the plaintext bytes of the application data among them: every TLS 1.3
// record after the ServerHello is encrypted and looks alike on the wire,
// so each is tried in turn. Those under the handshake key fail to open;
// the first that opens is number 0, and all after it must open in
// sequence, or the key changed (a KeyUpdate) and the count is unknown.
// Only application data may follow the handshake if onlyData is set (the
// client's records: a post-handshake message from it would be news).
func count13(records []record, ci *CryptoInfo, onlyData bool) (seq uint64, appBytes int64, err error) {
	var aead cipher.AEAD
	started := false
	for i := range records {
		r := &records[i]
		if r.typ() != recordTypeApplicationData {
			continue // ClientHello, ServerHello, compatibility ChangeCipherSpec
		}
		if aead == nil {
			if aead, err = recordAEAD(ci.CipherType, ci.Key); err != nil {
				return 0, 0, err
			}
		}
		plain, err := aead.Open(nil, nonce13(ci.nonceBase(), seq), r.body, r.header[:])
		switch {
		case err == nil:
			started = true
			seq++
		case started:
			return 0, 0, fmt.Errorf("record %d under the traffic key does not open", seq)
		default:
			continue
		}
		// TLSInnerPlaintext: content, the content type, zero padding.
		plain = bytes.TrimRight(plain, "\x00")
		if len(plain) == 0 {
			return 0, 0, fmt.Errorf("record %d has no content type", seq-1)
		}
		typ := plain[len(plain)-1]
		if typ == recordTypeApplicationData {
			appBytes += int64(len(plain) - 1)
		} else if onlyData {
			return 0, 0, fmt.Errorf("record %d under the traffic key is of type %d", seq-1, typ)
		}
	}
	return seq, appBytes, nil
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
