package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
)

// The WebSocket opening handshake (RFC 6455 §4), and nothing more: sluice
// routes on the upgrade request but never parses frames, so after the 101
// the stream protocol runs on the raw bytes.

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	s := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(s[:])
}

// wsRequest is the client's upgrade request; key is 16 bytes base64.
func wsRequest(host, key string) string {
	return "GET /soak HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n\r\n"
}

var errNotUpgrade = errors.New("soak: not a WebSocket upgrade")

// wsReadResponse reads the server's answer to the upgrade and checks it.
func wsReadResponse(br *bufio.Reader, key string) error {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return fmt.Errorf("read status line: %w", err)
	}
	if !strings.HasPrefix(line, "HTTP/1.1 101 ") {
		return fmt.Errorf("%w: status %q", errNotUpgrade, line)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return fmt.Errorf("read response header: %w", err)
	}
	if h.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		return fmt.Errorf("%w: wrong Sec-WebSocket-Accept", errNotUpgrade)
	}
	return nil
}

// wsAcceptUpgrade reads the request head from br and writes the 101.
func wsAcceptUpgrade(br *bufio.Reader, w io.Writer) error {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return fmt.Errorf("read request line: %w", err)
	}
	if !strings.HasPrefix(line, "GET ") {
		return fmt.Errorf("%w: %q", errNotUpgrade, line)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return fmt.Errorf("read request header: %w", err)
	}
	key := h.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(h.Get("Upgrade"), "websocket") || key == "" {
		return errNotUpgrade
	}
	_, err = io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+wsAccept(key)+"\r\n\r\n")
	return err
}
