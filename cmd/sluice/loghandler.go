package main

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"sluice/l4"
)

// logRoot is the handler a reload swaps: the configured format and level
// over the log queue.
type logRoot struct{ h slog.Handler }

// swapHandler is the process's slog.Handler. Every package holds a
// *slog.Logger made from it, often with attributes added (With), so a
// reload that changes the log format or level cannot hand out new loggers:
// it swaps the root under them all, and each derived handler rebuilds its
// attributes and groups over the new root once, on its next record.
type swapHandler struct {
	root  *atomic.Pointer[logRoot]
	ops   []func(slog.Handler) slog.Handler // WithAttrs and WithGroup, in order
	cache atomic.Pointer[derived]
}

// derived is a swapHandler's ops applied to one root.
type derived struct {
	root *logRoot
	h    slog.Handler
}

func (h *swapHandler) inner() slog.Handler {
	root := h.root.Load()
	if len(h.ops) == 0 {
		return root.h
	}
	if d := h.cache.Load(); d != nil && d.root == root {
		return d.h
	}
	x := root.h
	for _, op := range h.ops {
		x = op(x)
	}
	h.cache.Store(&derived{root: root, h: x})
	return x
}

func (h *swapHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.root.Load().h.Enabled(ctx, l)
}

func (h *swapHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner().Handle(ctx, r)
}

func (h *swapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.with(func(x slog.Handler) slog.Handler { return x.WithAttrs(attrs) })
}

func (h *swapHandler) WithGroup(name string) slog.Handler {
	return h.with(func(x slog.Handler) slog.Handler { return x.WithGroup(name) })
}

func (h *swapHandler) with(op func(slog.Handler) slog.Handler) slog.Handler {
	ops := append(append(make([]func(slog.Handler) slog.Handler, 0, len(h.ops)+1), h.ops...), op)
	return &swapHandler{root: h.root, ops: ops}
}

// logs is the process's logging: the logger every package gets, the queue
// under it, and what a reload changes.
type logs struct {
	logger *slog.Logger
	queue  *logQueue
	root   *atomic.Pointer[logRoot]
}

// newLogger builds the process's one logger, which writes through a
// logQueue to w; the caller closes the queue at exit.
func newLogger(w io.Writer, lc l4.LogConfig) *logs {
	l := &logs{root: new(atomic.Pointer[logRoot])}
	// The queue's writer reports drops straight to w, in the same format,
	// whatever the level: it says that lines are missing. It follows the
	// format a reload sets.
	l.queue = newLogQueue(w, logQueueLines, logQueueBytes, func(dropped int64) {
		slog.New(formatHandler(l.format(), w, nil)).Warn("log output stalled; lines dropped", "dropped", dropped)
	})
	l.apply(lc)
	l.logger = slog.New(&swapHandler{root: l.root})
	return l
}

// apply puts the format and level of lc in force.
func (l *logs) apply(lc l4.LogConfig) {
	opts := &slog.HandlerOptions{}
	switch lc.Level {
	case "debug":
		opts.Level = slog.LevelDebug
	case "warn":
		opts.Level = slog.LevelWarn
	case "error":
		opts.Level = slog.LevelError
	}
	l.root.Store(&logRoot{h: formatHandler(lc.Format, l.queue, opts)})
}

// format is the format in force.
func (l *logs) format() string {
	if r := l.root.Load(); r != nil {
		if _, ok := r.h.(*slog.JSONHandler); ok {
			return "json"
		}
	}
	return "text"
}

// formatHandler builds the handler for format over w. The JSON handler
// writes durations as seconds (see jsonSeconds); the text handler keeps
// Go's duration strings, which carry their unit.
func formatHandler(format string, w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	if format == "json" {
		o := slog.HandlerOptions{}
		if opts != nil {
			o = *opts
		}
		o.ReplaceAttr = durationsAsSeconds(o.ReplaceAttr)
		return slog.NewJSONHandler(w, &o)
	}
	return slog.NewTextHandler(w, opts)
}

// durationsAsSeconds returns a ReplaceAttr that runs next, if any, and
// then rewrites a time.Duration value as a number of seconds. slog alone
// writes a bare count of nanoseconds, which a reader of the log cannot
// tell from any other integer. slog calls ReplaceAttr for attributes
// nested in groups and for those added by With, so every duration in a
// line is converted.
func durationsAsSeconds(next func([]string, slog.Attr) slog.Attr) func([]string, slog.Attr) slog.Attr {
	return func(groups []string, a slog.Attr) slog.Attr {
		if next != nil {
			a = next(groups, a)
		}
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.Float64Value(jsonSeconds(a.Value.Duration()))
		}
		return a
	}
}

// jsonSeconds is d in seconds, rounded to the microsecond. It divides a
// whole count of microseconds (exact in a float64 up to 2^53, some 285
// years) by 1e6, so the result is the float nearest that decimal and
// encodes with at most six decimals and, since every nonzero value is at
// least 1e-6, without an exponent: 1.555554, not 1.5555539999999999
// (which d.Seconds() gives) or 1.555554e+00.
func jsonSeconds(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)/time.Microsecond) / 1e6
}
