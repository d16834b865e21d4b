#!/usr/bin/env bash
# make bench-k6: the k6 versions of the workloads, against a sluice started
# here with the benchmark's peer configuration (TLS on 24000, wss on 24001)
# in front of a demo backend. k6 is not in Debian; install it from
# https://k6.io/docs/get-started/installation/ (a single static binary).
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/lib.sh
if ! command -v k6 >/dev/null; then
	echo "bench-k6: k6 is not on PATH. Install it (https://k6.io/docs/get-started/installation/,"
	echo "a single static binary, or 'go install go.k6.io/k6@latest'), then run make bench-k6 again."
	exit 0
fi
go build -o bin/sluice ./cmd/sluice
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
bin/sluice demo-backend -listen 127.0.0.1:19081 >"$work/demo.log" 2>&1 & pids+=($!)
cat >"$work/sluice.toml" <<TOML
[log]
level = "warn"
[[listener]]
address = "127.0.0.1:24000"
[listener.tls]
[[listener.route]]
upstream = "demo"
[[listener]]
address = "127.0.0.1:24001"
[listener.tls]
[[listener.route]]
upstream = "demo"
[[upstream]]
name = "demo"
servers = ["127.0.0.1:19081"]
TOML
bin/sluice -config "$work/sluice.toml" >"$work/sluice.log" 2>&1 & pids+=($!)
wait_ports 24000 24001
k6 run -q -e TARGET=https://127.0.0.1:24000/healthz bench/k6/https-keepalive.js
k6 run -q -e TARGET=wss://127.0.0.1:24001/echo bench/k6/wss-connect.js
k6 run -q -e TARGET=wss://127.0.0.1:24001/echo -e VUS=1000 -e HOLD=20s bench/k6/wss-echo.js
