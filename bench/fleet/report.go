package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// result is one check's outcome: a line of figures, and what failed.
type result struct {
	n       int
	name    string
	pass    bool
	summary string // the figures
	key     string // the figure that decides, for the table
	details []string
	took    time.Duration
}

func (r *result) fail(format string, args ...any) {
	r.details = append(r.details, fmt.Sprintf(format, args...))
}

func (r result) verdict() string {
	if r.pass {
		return "PASS"
	}
	return "FAIL"
}

// maxDetails bounds the failure lines printed per check.
const maxDetails = 12

func (r result) print(w io.Writer) {
	fmt.Fprintf(w, "%s %d %s: %s\n", r.verdict(), r.n, r.name, r.summary)
	for i, d := range r.details {
		if i == maxDetails {
			fmt.Fprintf(w, "    ... and %d more\n", len(r.details)-maxDetails)
			break
		}
		fmt.Fprintf(w, "    %s\n", d)
	}
}

// summary prints the table at the end: each check, its verdict, how long
// it took and how many things failed in it.
func (f *fleet) summary(w io.Writer, took time.Duration, setupErr error) {
	fmt.Fprintf(w, "\nfleet summary: %s, 3 instances behind %s, %v in all\n", orDash(f.version, "sluice"), orDash(f.lbVersion, "HAProxy"), took.Round(100*time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  check\tresult\ttook\tfindings\tfigures")
	if setupErr != nil {
		fmt.Fprintf(tw, "  0 setup\tFAIL\t\t1\t%v\n", setupErr)
	}
	for _, r := range f.results {
		took := "-"
		if r.took > 0 {
			took = r.took.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "  %d %s\t%s\t%s\t%d\t%s\n", r.n, r.name, r.verdict(), took, len(r.details), r.key)
	}
	tw.Flush()
}

func orDash(s, dash string) string {
	if s == "" {
		return dash
	}
	return s
}
