package tlsterm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strings"
	"testing"
)

// TestInfo13RFC8448 derives the traffic keys of RFC 8448 §3 (simple 1-RTT,
// TLS_AES_128_GCM_SHA256) and lays them out as the kernel reads them.
func TestInfo13RFC8448(t *testing.T) {
	p, _ := suiteFor(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	for _, tc := range []struct {
		name, secret, key, iv string
	}{
		{"server handshake", "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38", "3fce516009c21727d0f2e4e86ee403bc", "5d313eb2671276ee13000b30"},
		{"server application", "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643", "9f02283b6c9c07efc26bb9f2ac92e356", "cf782b88dd83549aadf1e984"},
		{"client application", "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5", "17422dda596ed5d9acd890e3c63f5051", "5b78923dee08579033e523d9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ci, err := info13(p, unhex(t, tc.secret), 7)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ci.Key, unhex(t, tc.key)) || !bytes.Equal(ci.nonceBase(), unhex(t, tc.iv)) {
				t.Fatalf("key % x iv % x, want %s %s", ci.Key, ci.nonceBase(), tc.key, tc.iv)
			}
			want := binary.NativeEndian.AppendUint16(nil, 0x0304)
			want = binary.NativeEndian.AppendUint16(want, 51)
			iv := unhex(t, tc.iv)
			want = append(want, iv[4:]...) // iv
			want = append(want, unhex(t, tc.key)...)
			want = append(want, iv[:4]...) // salt
			want = append(want, 0, 0, 0, 0, 0, 0, 0, 7)
			if got := ci.Marshal(); !bytes.Equal(got, want) {
				t.Fatalf("crypto_info\n% x, want\n% x", got, want)
			}
		})
	}
}

// TestCryptoInfoSizes checks each cipher's struct size against the uapi
// header: setsockopt refuses any other length.
func TestCryptoInfoSizes(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 48)
	for _, tc := range []struct {
		version, suite uint16
		cipher         uint16
		size, ivLen    int
	}{
		{tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, 51, 40, 8},
		{tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384, 52, 56, 8},
		{tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256, 54, 56, 12},
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, 51, 40, 8},
		{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 52, 56, 8},
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, 54, 56, 12},
	} {
		name := VersionName(tc.version) + " " + tls.CipherSuiteName(tc.suite)
		p, ok := suiteFor(tc.version, tc.suite)
		if !ok {
			t.Fatalf("%s: not supported", name)
		}
		var tx, rx CryptoInfo
		if tc.version == tls.VersionTLS13 {
			var err error
			if tx, err = info13(p, secret[:p.hash().Size()], 1); err != nil {
				t.Fatal(err)
			}
			rx = tx
		} else {
			tx, rx = infos12(p, secret, secret[:32], secret[:32], 1, 1)
		}
		for _, ci := range []CryptoInfo{tx, rx} {
			b := ci.Marshal()
			if len(b) != tc.size || len(ci.IV) != tc.ivLen || binary.NativeEndian.Uint16(b[2:]) != tc.cipher || binary.NativeEndian.Uint16(b) != tc.version {
				t.Errorf("%s: %d bytes, iv %d, header % x; want %d bytes, iv %d, cipher %d", name, len(b), len(ci.IV), b[:4], tc.size, tc.ivLen, tc.cipher)
			}
		}
	}
	if _, ok := suiteFor(tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA); ok {
		t.Error("a CBC suite is accepted")
	}
}

// TestPRF12 checks P_SHA256 against the output of its definition written
// out for two blocks, so that the loop's chaining of A(i) is covered.
func TestPRF12(t *testing.T) {
	secret, seed := []byte("secret"), []byte("seed")
	h := func(parts ...[]byte) []byte {
		m := hmacSHA256(secret)
		for _, p := range parts {
			m.Write(p)
		}
		return m.Sum(nil)
	}
	ls := append([]byte("label"), seed...)
	a1 := h(ls)
	a2 := h(a1)
	want := append(h(a1, ls), h(a2, ls)...)[:40]
	if got := prf12(sha256.New, secret, "label", seed, 40); !bytes.Equal(got, want) {
		t.Fatalf("prf12 % x, want % x", got, want)
	}
}

func hmacSHA256(key []byte) hash.Hash { return hmac.New(sha256.New, key) }

// unhex decodes a hex string of the RFCs' test vectors.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
