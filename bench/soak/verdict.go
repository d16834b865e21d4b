package main

import (
	"fmt"
	"strconv"
	"strings"
)

// verdict is a backend's account of one stream: what it received of the
// upload and how the stream ended on its side. Backends print one line per
// stream on stdout:
//
//	V <id> <pid> <status> <cause|-> <got> <want> <corrupt>
//
// A stream id of 0 is a connection that failed before its header.
type verdict struct {
	ID      uint64
	PID     int
	Status  string
	Cause   string
	Got     int64
	Want    int64
	Corrupt int64
}

func (v verdict) line() string {
	cause := v.Cause
	if cause == "" {
		cause = "-"
	}
	return fmt.Sprintf("V %d %d %s %s %d %d %d\n", v.ID, v.PID, v.Status, cause, v.Got, v.Want, v.Corrupt)
}

func parseVerdict(line string) (verdict, error) {
	f := strings.Fields(line)
	if len(f) != 8 || f[0] != "V" {
		return verdict{}, fmt.Errorf("parse verdict %q: want 8 fields after V", line)
	}
	var v verdict
	var err error
	nums := []struct {
		s   string
		dst *int64
	}{{f[5], &v.Got}, {f[6], &v.Want}, {f[7], &v.Corrupt}}
	if v.ID, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return verdict{}, fmt.Errorf("parse verdict id: %w", err)
	}
	if v.PID, err = strconv.Atoi(f[2]); err != nil {
		return verdict{}, fmt.Errorf("parse verdict pid: %w", err)
	}
	for _, n := range nums {
		if *n.dst, err = strconv.ParseInt(n.s, 10, 64); err != nil {
			return verdict{}, fmt.Errorf("parse verdict count: %w", err)
		}
	}
	v.Status = f[3]
	if f[4] != "-" {
		v.Cause = f[4]
	}
	return v, nil
}
