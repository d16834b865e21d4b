package main

import (
	"context"
	"time"

	"sluice/l4"
)

// reload reads the configuration file again and puts it to work in place
// (l4.Proxy.Reload), with the process-wide keys: log format and level,
// gc_percent, drain_timeout. A file that fails -check's checks changes
// nothing; each of its errors is logged with file, line and key.
func (r *running) reload(proxy *l4.Proxy) {
	logger := r.logs.logger
	cfg, lines, err := loadConfig(r.path)
	if err == nil {
		err = checkAdmin(cfg.Admin)
	}
	if err == nil {
		var ch l4.Changes
		if ch, err = proxy.Reload(context.Background(), cfg); err == nil {
			r.obs.reloaded(true, time.Now())
			if err := r.obs.reconfigure(cfg.Admin); err != nil {
				logger.Error("admin listener unchanged", "error", locate(r.path, lines, err).Error())
			}
			r.cfg = cfg
			r.logs.apply(cfg.Log)
			if r.gc != nil {
				r.gc.setBase(cfg.GCPercentOrDefault())
			}
			logger.Info("configuration reloaded", append([]any{"file", r.path}, ch.LogAttrs()...)...)
			return
		}
		err = locate(r.path, lines, err)
	}
	r.obs.reloaded(false, time.Now())
	for _, e := range flatten(err) {
		logger.Error("reload failed; the running configuration is unchanged", "error", e.Error())
	}
}
