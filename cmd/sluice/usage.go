package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// demoFlagLines are the flags of "sluice demo-backend", for the top-level
// help. Its flag set lives in newDemoBackend, out of reach here; a test
// checks that these lines name exactly the flags it defines.
var demoFlagLines = []string{
	"-listen ADDRESS\tplain HTTP/WebSocket address to listen on (default " + demoDefaultListen + ")",
	"-proxy\trequire a PROXY protocol v1/v2 header on every connection (backend behind send_proxy)",
}

// writeUsage writes "sluice -h": every command with what it does, then the
// flags of each, one line each. main is the serving command's flag set.
func writeUsage(w io.Writer, main *flag.FlagSet) {
	fmt.Fprint(w, `sluice terminates TLS at layer 4 and relays the decrypted stream to backend
pools, with the PROXY protocol both ways.

Usage:
  sluice [-config FILE]                 serve until SIGTERM or SIGINT (SIGHUP reloads the configuration)
  sluice -check [-v] [-config FILE]     check the configuration and exit 0 or 1; -v prints what it sets up
  sluice -version                       print the version
  sluice demo-backend [-listen ADDRESS] [-proxy]
                                        a demo HTTP and WebSocket application server, to put sluice in front of
  sluice cert -names NAMES -cert FILE -key FILE [-days N] [-force]
                                        write a self-signed test certificate and its key
  sluice ticket-key                     print a fresh session ticket key, a line for a session_ticket_keys file

Flags:
`)
	writeFlags(w, main)
	fmt.Fprint(w, "\ndemo-backend flags:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range demoFlagLines {
		fmt.Fprintf(tw, "  %s\n", l)
	}
	tw.Flush()
	fmt.Fprint(w, "\ncert flags:\n")
	writeFlags(w, newCertFlagSet(&certOptions{}, io.Discard))
	fmt.Fprint(w, "\nExample configurations are in configs/; the README's Quickstart runs one.\n")
}

// writeFlags writes fs's flags one line each, "-name ARG  usage (default
// x)", with the usage's back-quoted word as ARG, as flag.PrintDefaults
// does over two lines.
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		name := "-" + f.Name
		if arg != "" {
			name += " " + strings.ToUpper(arg)
		}
		switch f.DefValue {
		case "", "false", "0":
		default:
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, usage)
	})
	tw.Flush()
}
