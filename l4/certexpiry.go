package l4

import (
	"fmt"
	"log/slog"
	"time"

	"sluice/tlsterm"
)

// certExpiryWarning is how long before a certificate expires -check and
// start-up begin to warn about it: time enough to renew by hand.
const certExpiryWarning = 30 * 24 * time.Hour

// warnExpiring warns once per certificate of store that expires within
// certExpiryWarning of now, naming its key under path ("listener[0].tls")
// and its file. Not an error: it still serves, and a renewal may be on its
// way. Expired ones do not load at all (tlsterm.LoadCertificate). The
// in-memory self-signed certificate is skipped: no one renews it, it is
// made anew at each start.
func warnExpiring(logger *slog.Logger, listener, path string, store *tlsterm.Store, now time.Time) {
	for _, c := range store.Certificates() {
		left := c.NotAfter.Sub(now)
		if c.Index < 0 || left >= certExpiryWarning {
			continue
		}
		logger.Warn("certificate expires soon",
			"listener", listener,
			"key", fmt.Sprintf("%s.certificates[%d].cert", path, c.Index),
			"file", c.File,
			"subject", c.Subject,
			"not_after", c.NotAfter.UTC().Format(time.RFC3339),
			"days_left", int(left/(24*time.Hour)))
	}
}
