#!/usr/bin/env bash
# Regenerates cmd/sluice/default.pgo, the CPU profile Go's compiler builds
# sluice with (profile-guided optimisation: go build and go install take a
# main package's default.pgo by themselves). It is one profile of sluice
# under the bench's loads, one after another: full TLS handshakes (S3),
# resumed ones (S3r), keep-alive small requests (S1), and WebSocket
# connections opened, upgraded and echoing (S5). sluice runs on CPU 0 with
# GOMAXPROCS=1, the loads and the demo backend on CPU 1, as in make bench.
#
#   bash bench/pgo.sh [OUT]     (default OUT: bin/pgo; about a minute; needs wrk)
#
# DUR sets each load's seconds (8); PGO_FILE where the profile goes
# (cmd/sluice/default.pgo; .ci/run's smoke run writes elsewhere).
#
# Rerun it when the hot paths change (relay, handshake, parking): a stale
# profile only optimises less. Stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
OUT=${1:-bin/pgo}
DUR=${DUR:-8}
PGO_FILE=${PGO_FILE:-cmd/sluice/default.pgo}
mkdir -p "$OUT"
go build -o "$OUT/sluice" ./cmd/sluice
go build -o "$OUT/loadgen" ./bench/loadgen
"$OUT/sluice" cert -force -names localhost -cert "$OUT/cert.pem" -key "$OUT/key.pem" >/dev/null

kill_on_exit

taskset -c 1 "$OUT/sluice" demo-backend -listen 127.0.0.1:19780 >"$OUT/backend.log" 2>&1 &
pids+=($!)
listener() { # NAME PORT TICKETS
	cat <<CONF
[[listener]]
name = "$1"
address = "127.0.0.1:$2"
[listener.tls]
certificates = [{ cert = "$OUT/cert.pem", key = "$OUT/key.pem" }]
min_version = "1.3"
session_tickets = $3
[[listener.route]]
upstream = "app"
CONF
}
{
	cat <<CONF
[log]
level = "warn"
[admin]
address = "127.0.0.1:19791"
pprof = true
[[upstream]]
name = "app"
servers = ["127.0.0.1:19780"]
CONF
	listener tls 19743 false
	listener tlsr 19744 true
} >"$OUT/sluice.toml"
GOMAXPROCS=1 taskset -c 0 "$OUT/sluice" -config "$OUT/sluice.toml" >"$OUT/sluice.log" 2>&1 &
pids+=($!)
wait_ports 19743 19744 19780 19791

# One profile over the four loads; each load ends by itself.
curl -s -o "$OUT/cpu.pprof" "http://127.0.0.1:19791/debug/pprof/profile?seconds=$((4 * DUR + 6))" &
prof=$!
pids+=($prof)
taskset -c 1 wrk -t1 -c64 -d"${DUR}s" -H "Connection: close" https://127.0.0.1:19743/ >"$OUT/s3.load" 2>&1
taskset -c 1 "$OUT/loadgen" -mode conn -addr 127.0.0.1:19744 -conns 64 -resume -duration "${DUR}s" >"$OUT/s3r.load" 2>&1
taskset -c 1 wrk -t1 -c64 -d"${DUR}s" https://127.0.0.1:19743/ >"$OUT/s1.load" 2>&1
taskset -c 1 "$OUT/loadgen" -mode ws -url wss://127.0.0.1:19743/echo -conns 2000 -active 0.5 -rate 2 \
	-duration "${DUR}s" -timeout 60s </dev/null >"$OUT/s5.load" 2>&1
wait "$prof"
[ -s "$OUT/cpu.pprof" ] || { echo "pgo: no profile in $OUT/cpu.pprof" >&2; exit 1; }
cp "$OUT/cpu.pprof" "$PGO_FILE"
go tool pprof -top -nodecount=12 "$PGO_FILE" 2>/dev/null | sed -n '4,20p'
echo "$PGO_FILE: $(wc -c <"$PGO_FILE") bytes"
