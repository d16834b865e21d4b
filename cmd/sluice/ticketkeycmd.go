package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"sluice/tlsterm"
)

// runTicketKey is "sluice ticket-key": it prints a fresh session ticket
// key, a line for a session_ticket_keys file. It takes no flags.
func runTicketKey(args []string, stdout io.Writer, rnd io.Reader) error {
	if len(args) > 0 {
		return errors.New("ticket-key takes no arguments: sluice ticket-key >> FILE adds a decrypt-only key (see the README's \"Session tickets across a fleet\")")
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	key, err := tlsterm.NewTicketKey(rnd)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, key)
	return err
}
