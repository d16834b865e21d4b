package tlsterm

import (
	"crypto/rand"
	"testing"
)

// BenchmarkRecordCrypto is the cost of the record layer's cryptography
// alone: sealing and opening full 16 KiB records with each AEAD the kernel
// takes. A terminated relay whose record layer is in the kernel pays the
// splice relay's cost (S6a's CPU-s per GiB) plus this, as the kernel's
// AES-GCM and ChaCha20 use the same instructions Go's do; the s/GiB metric
// makes the two add up (bench/results/ktls.md).
//
//	go test -run '^$' -bench RecordCrypto ./tlsterm
func BenchmarkRecordCrypto(b *testing.B) {
	for _, tc := range []struct {
		name       string
		cipherType uint16
		keyLen     int
	}{
		{"aes128gcm", tlsCipherAESGCM128, 16},
		{"aes256gcm", tlsCipherAESGCM256, 32},
		{"chacha20poly1305", tlsCipherChaCha20Poly1305, 32},
	} {
		key := make([]byte, tc.keyLen)
		rand.Read(key)
		aead, err := recordAEAD(tc.cipherType, key)
		if err != nil {
			b.Fatal(err)
		}
		const record = 16 << 10
		plain := make([]byte, record)
		nonce := make([]byte, aead.NonceSize())
		aad := []byte{23, 3, 3, 0x40, 0x11}
		sealed := aead.Seal(nil, nonce, plain, aad)
		for _, op := range []string{"seal", "open"} {
			b.Run(tc.name+"/"+op, func(b *testing.B) {
				b.SetBytes(record)
				out := make([]byte, 0, record+aead.Overhead())
				for b.Loop() {
					if op == "seal" {
						out = aead.Seal(out[:0], nonce, plain, aad)
					} else if _, err := aead.Open(out[:0], nonce, sealed, aad); err != nil {
						b.Fatal(err)
					}
				}
				perGiB := b.Elapsed().Seconds() / float64(b.N) * float64(1<<30) / record
				b.ReportMetric(perGiB, "s/GiB")
			})
		}
	}
}
