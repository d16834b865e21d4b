package tlsterm

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"hash"
)

// Cipher types of include/uapi/linux/tls.h.
const (
	tlsCipherAESGCM128        = 51
	tlsCipherAESGCM256        = 52
	tlsCipherChaCha20Poly1305 = 54
)

// CryptoInfo is one direction's struct tls12_crypto_info_<cipher>, the
// value of setsockopt(SOL_TLS, TLS_TX or TLS_RX). The kernel uses the same
// struct for TLS 1.2 and 1.3.
type CryptoInfo struct {
	Version    uint16 // tls.VersionTLS12 or tls.VersionTLS13
	CipherType uint16 // TLS_CIPHER_* of the uapi header
	// IV is, for AES-GCM, the 8 bytes after Salt in TLS 1.3 and the
	// explicit nonce of the next record in TLS 1.2; for ChaCha20-Poly1305
	// the whole 12-byte IV.
	IV   []byte
	Key  []byte
	Salt []byte // 4 bytes for AES-GCM, none for ChaCha20-Poly1305
	// Seq is rec_seq: the sequence number of the next record under Key.
	Seq uint64
}

// Marshal lays ci out byte for byte as the kernel reads it: the version and
// cipher type in native byte order, then iv, key, salt and the big-endian
// rec_seq. setsockopt wants exactly this length (40 or 56 bytes).
func (ci *CryptoInfo) Marshal() []byte {
	b := make([]byte, 0, 4+len(ci.IV)+len(ci.Key)+len(ci.Salt)+8)
	b = binary.NativeEndian.AppendUint16(b, ci.Version)
	b = binary.NativeEndian.AppendUint16(b, ci.CipherType)
	b = append(b, ci.IV...)
	b = append(b, ci.Key...)
	b = append(b, ci.Salt...)
	return binary.BigEndian.AppendUint64(b, ci.Seq)
}

// nonceBase is the 12 bytes a TLS 1.3 (or TLS 1.2 ChaCha20) record nonce
// is XORed from: salt‖iv for AES-GCM, iv for ChaCha20.
func (ci *CryptoInfo) nonceBase() []byte {
	return append(append([]byte(nil), ci.Salt...), ci.IV...)
}

// suiteParams is what the kernel and the key schedule need to know of a
// cipher suite.
type suiteParams struct {
	version    uint16
	cipherType uint16
	hash       func() hash.Hash
	keyLen     int
	ivLen      int // TLS 1.2 fixed IV: 4 (GCM salt) or 12 (ChaCha20)
}

// suiteFor returns the parameters of id negotiated at version, or false
// when the kernel cannot take it over (CBC suites, TLS 1.1 and older).
func suiteFor(version, id uint16) (suiteParams, bool) {
	sha384 := func() hash.Hash { return sha512.New384() }
	p := suiteParams{version: version, hash: sha256.New}
	switch {
	case version == tls.VersionTLS13 && id == tls.TLS_AES_128_GCM_SHA256,
		version == tls.VersionTLS12 && (id == tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 || id == tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256):
		p.cipherType, p.keyLen, p.ivLen = tlsCipherAESGCM128, 16, 4
	case version == tls.VersionTLS13 && id == tls.TLS_AES_256_GCM_SHA384,
		version == tls.VersionTLS12 && (id == tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 || id == tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384):
		p.cipherType, p.keyLen, p.ivLen, p.hash = tlsCipherAESGCM256, 32, 4, sha384
	case version == tls.VersionTLS13 && id == tls.TLS_CHACHA20_POLY1305_SHA256,
		version == tls.VersionTLS12 && (id == tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 || id == tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256):
		p.cipherType, p.keyLen, p.ivLen = tlsCipherChaCha20Poly1305, 32, 12
	default:
		return suiteParams{}, false
	}
	return p, true
}

// hkdfExpandLabel is HKDF-Expand-Label of RFC 8446 §7.1.
func hkdfExpandLabel(h func() hash.Hash, secret []byte, label string, context []byte, length int) ([]byte, error) {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full)+len(context))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	out, err := hkdf.Expand(h, secret, string(info), length)
	if err != nil {
		return nil, fmt.Errorf("hkdf expand %q: %w", label, err)
	}
	return out, nil
}

// info13 derives the crypto_info of a TLS 1.3 traffic secret (RFC 8446
// §7.3): key and a 12-byte IV, which AES-GCM splits into salt‖iv.
func info13(p suiteParams, secret []byte, seq uint64) (CryptoInfo, error) {
	key, err := hkdfExpandLabel(p.hash, secret, "key", nil, p.keyLen)
	if err != nil {
		return CryptoInfo{}, err
	}
	iv, err := hkdfExpandLabel(p.hash, secret, "iv", nil, 12)
	if err != nil {
		return CryptoInfo{}, err
	}
	ci := CryptoInfo{Version: tls.VersionTLS13, CipherType: p.cipherType, Key: key, IV: iv, Seq: seq}
	if p.cipherType != tlsCipherChaCha20Poly1305 {
		ci.Salt, ci.IV = iv[:4], iv[4:]
	}
	return ci, nil
}

// prf12 is the TLS 1.2 PRF of RFC 5246 §5, P_hash with the suite's hash.
func prf12(h func() hash.Hash, secret []byte, label string, seed []byte, length int) []byte {
	labelSeed := append([]byte(label), seed...)
	mac := hmac.New(h, secret)
	out := make([]byte, 0, length+mac.Size())
	mac.Write(labelSeed)
	a := mac.Sum(nil) // A(1)
	for len(out) < length {
		mac.Reset()
		mac.Write(a)
		mac.Write(labelSeed)
		out = mac.Sum(out)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	return out[:length]
}

// infos12 derives both directions' crypto_info of a TLS 1.2 session
// (RFC 5246 §6.3). AEAD suites have no MAC keys, so the key block is
// client key, server key, client IV, server IV.
func infos12(p suiteParams, master, clientRandom, serverRandom []byte, txSeq, rxSeq uint64) (tx, rx CryptoInfo) {
	seed := append(append([]byte(nil), serverRandom...), clientRandom...)
	kb := prf12(p.hash, master, "key expansion", seed, 2*p.keyLen+2*p.ivLen)
	clientKey, kb := kb[:p.keyLen], kb[p.keyLen:]
	serverKey, kb := kb[:p.keyLen], kb[p.keyLen:]
	clientIV, serverIV := kb[:p.ivLen], kb[p.ivLen:]
	return info12(p, serverKey, serverIV, txSeq), info12(p, clientKey, clientIV, rxSeq)
}

func info12(p suiteParams, key, fixedIV []byte, seq uint64) CryptoInfo {
	ci := CryptoInfo{Version: tls.VersionTLS12, CipherType: p.cipherType, Key: key, Seq: seq}
	if p.cipherType == tlsCipherChaCha20Poly1305 {
		ci.IV = fixedIV // RFC 7905: the nonce is this IV XOR the sequence number
		return ci
	}
	// The kernel writes IV as the explicit nonce of its next record and
	// then increments it. Starting from the sequence number, as crypto/tls
	// does, keeps it from reusing a nonce crypto/tls already sent under
	// this key, which for GCM would give the key away.
	ci.Salt = fixedIV
	ci.IV = binary.BigEndian.AppendUint64(nil, seq)
	return ci
}
