package tlsterm

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"
)

// TestControlRecordMeaning: what a control record from the client means
// for its stream, before any kernel is involved: close_notify ends it
// cleanly, user_canceled is let by, other alerts end it with their name;
// a handshake message other than a well-formed TLS 1.3 KeyUpdate (TLS 1.2
// renegotiation, a KeyUpdate with trailing bytes) ends it too.
func TestControlRecordMeaning(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  []byte
		want string // "" nil, "EOF" io.EOF, else a substring of the error
	}{
		{"close_notify", []byte{alertWarning, alertCloseNotify}, "EOF"},
		{"fatal close_notify", []byte{alertFatal, alertCloseNotify}, "EOF"},
		{"user_canceled", []byte{alertWarning, alertUserCanceled}, ""},
		{"fatal user_canceled", []byte{alertFatal, alertUserCanceled}, "user canceled"},
		{"handshake_failure", []byte{alertFatal, 40}, "handshake failure"},
		{"short", []byte{alertFatal}, "alert record of 1 bytes"},
	} {
		t.Run("alert/"+tc.name, func(t *testing.T) {
			checkMeaning(t, alert(tc.rec), tc.want)
		})
	}
	c12 := &KernelConn{version: tls.VersionTLS12}
	checkMeaning(t, c12.handshakeMessage([]byte{1, 0, 0, 0}), "renegotiation")
	c13 := &KernelConn{version: tls.VersionTLS13}
	checkMeaning(t, c13.handshakeMessage([]byte{handshakeKeyUpdate, 0, 0, 1, 0, 0}), "unexpected handshake message")
	checkMeaning(t, c13.handshakeMessage([]byte{handshakeKeyUpdate, 0, 0, 1, 2}), "unexpected handshake message")
	checkMeaning(t, c13.handshakeMessage([]byte{4, 0, 0, 1, 0}), "unexpected handshake message")
}

func checkMeaning(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil, want == "EOF" && err != io.EOF,
		want != "" && want != "EOF" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("got %v, want %q", err, want)
	}
}
