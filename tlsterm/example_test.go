package tlsterm_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"time"

	"sluice/tlsterm"
)

func ExampleNewConfig() {
	// In production the store reads PEM files, say
	//
	//	tlsterm.NewStore([]tlsterm.CertFile{{Cert: "example.com.crt", Key: "example.com.key"}}, "", logger)
	//
	// With none it serves a self-signed certificate for localhost and
	// logs a warning (to nowhere here: the logger is nil).
	store, err := tlsterm.NewStore(nil, "", nil)
	if err != nil {
		log.Fatal(err)
	}

	// Operator settings arrive as strings.
	minVersion, err := tlsterm.ParseVersion("TLSv1.3")
	if err != nil {
		log.Fatal(err)
	}
	auth, err := tlsterm.ParseClientAuth("none")
	if err != nil {
		log.Fatal(err)
	}

	cfg := tlsterm.NewConfig(store, tlsterm.Options{
		MinVersion: minVersion,
		NextProtos: []string{"h2", "http/1.1"},
		ClientAuth: auth,
	})
	// Each accepted conn then goes through
	//
	//	tc := tls.Server(conn, cfg)
	//	err := tlsterm.Handshake(ctx, tc, 10*time.Second)
	//	info := tlsterm.Describe(tc.ConnectionState())

	cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("self-signed:", store.SelfSigned(), cert.Leaf.DNSNames)
	fmt.Println("min version:", tlsterm.VersionName(cfg.MinVersion))
	fmt.Println("ALPN:", cfg.NextProtos)
	// Output:
	// self-signed: true [localhost]
	// min version: TLSv1.3
	// ALPN: [h2 http/1.1]
}

func ExampleParseCipherSuite() {
	for _, name := range []string{
		"ECDHE-RSA-AES128-GCM-SHA256",
		"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"TLS_RSA_WITH_RC4_128_SHA",
		"TLS_AES_128_GCM_SHA256",
	} {
		id, err := tlsterm.ParseCipherSuite(name)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(tls.CipherSuiteName(id))
	}
	// Output:
	// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
	// TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
	// cipher suite TLS_RSA_WITH_RC4_128_SHA is insecure: refused
	// cipher suite TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite: those are always on and not configurable
}

func ExamplePeekClientHello() {
	// A client says hello on a conn (one end of a pipe here; a TCP conn
	// accepted by a passthrough listener in production).
	client, conn := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer client.Close()
		tls.Client(client, &tls.Config{
			ServerName: "API.example.com",
			NextProtos: []string{"h2", "http/1.1"},
		}).Handshake() // fails when conn closes: there is no server here
	}()

	// Peek under a deadline, through a reader big enough for any hello.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(conn, tlsterm.MaxHelloBytes)
	hello, err := tlsterm.PeekClientHello(br)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("SNI:", hello.ServerName)
	fmt.Println("ALPN:", hello.ALPN)
	fmt.Println("offers TLSv1.3:", slices.Contains(hello.SupportedVersions, tls.VersionTLS13))

	// Nothing was consumed: route on the hello, dial the backend and relay
	// br, not conn, so the hello goes first, unchanged:
	//
	//	io.Copy(backend, br)
	peeked, _ := io.ReadAll(io.LimitReader(br, int64(hello.Length)))
	fmt.Println("hello still in br:", len(peeked) == hello.Length)

	conn.Close()
	<-done
	// Output:
	// SNI: api.example.com
	// ALPN: [h2 http/1.1]
	// offers TLSv1.3: true
	// hello still in br: true
}
