#!/usr/bin/env bash
# Where S3's (or S1's) time goes: full TLS 1.3 handshakes (wrk,
# Connection: close, 64 connections), or with S1=1 small keep-alive
# requests, against sluice, a bare crypto/tls server (bench/tlsbare) and
# the least TLS proxy in Go (bench/tlsbare -backend) on the same CPU, with
# GOMAXPROCS=1, each profiled with pprof while it runs. Prints requests per CPU-second of each and the top
# of each CPU and allocation profile; the profiles stay in OUT.
#
#   bash bench/profile-s3.sh [OUT]        (default: bin/profile-s3)
#   S1=1 bash bench/profile-s3.sh [OUT]   (default: bin/profile-s1)
#   S3R=1 bash bench/profile-s3.sh [OUT]  (default: bin/profile-s3r):
#   resumed handshakes, from bin/loadgen -mode conn -resume as in S3r
#
# The three run on CPU 0, wrk and the backend on CPU 1, as in make bench.
# About a minute (DUR, seconds of load on each, default 10). Stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
S1=${S1:-0}
S3R=${S3R:-0}
tickets=false
listen=(-listen) # the flag tlsbare and tlsproxy listen with
if [ "$S1" = 1 ]; then
	OUT=${1:-bin/profile-s1}
	close=()
elif [ "$S3R" = 1 ]; then
	OUT=${1:-bin/profile-s3r}
	tickets=true
	listen=(-listen "" -listen-resume)
else
	OUT=${1:-bin/profile-s3}
	close=(-H "Connection: close")
fi
DUR=${DUR:-10}
mkdir -p "$OUT"
go build -o "$OUT/sluice" ./cmd/sluice
go build -o "$OUT/tlsbare" ./bench/tlsbare
go build -o "$OUT/loadgen" ./bench/loadgen
"$OUT/sluice" cert -names localhost -cert "$OUT/cert.pem" -key "$OUT/key.pem" >/dev/null

kill_on_exit

taskset -c 1 "$OUT/sluice" demo-backend -listen 127.0.0.1:19580 >"$OUT/backend.log" 2>&1 &
pids+=($!)
cat >"$OUT/sluice.toml" <<CONF
[log]
level = "warn"
[admin]
address = "127.0.0.1:19591"
pprof = true
[[listener]]
name = "tls"
address = "127.0.0.1:19543"
[listener.tls]
certificates = [{ cert = "$OUT/cert.pem", key = "$OUT/key.pem" }]
min_version = "1.3"
session_tickets = $tickets
[[listener.route]]
upstream = "http"
[[upstream]]
name = "http"
servers = ["127.0.0.1:19580"]
CONF
GOMAXPROCS=1 taskset -c 0 "$OUT/sluice" -config "$OUT/sluice.toml" >"$OUT/sluice.log" 2>&1 &
pids+=($!)
sluice_pid=$!
GOMAXPROCS=1 taskset -c 0 "$OUT/tlsbare" "${listen[@]}" 127.0.0.1:19544 -cert "$OUT/cert.pem" -key "$OUT/key.pem" -pprof 127.0.0.1:19592 >"$OUT/tlsbare.log" 2>&1 &
pids+=($!)
bare_pid=$!
GOMAXPROCS=1 taskset -c 0 "$OUT/tlsbare" "${listen[@]}" 127.0.0.1:19545 -backend 127.0.0.1:19580 -cert "$OUT/cert.pem" -key "$OUT/key.pem" -pprof 127.0.0.1:19593 >"$OUT/tlsproxy.log" 2>&1 &
pids+=($!)
proxy_pid=$!
wait_ports 19543 19544 19545 19580 19591 19592 19593

hz=$(getconf CLK_TCK)

run() { # NAME PID PORT PPROF
	local name=$1 pid=$2 port=$3 pprof=$4
	curl -s -o /dev/null "http://$pprof/debug/pprof/allocs" # warm
	local c0 c1
	c0=$(cpu_ticks "$pid")
	curl -s -o "$OUT/$name.cpu.pprof" "http://$pprof/debug/pprof/profile?seconds=$((DUR - 2))" &
	local prof=$!
	local reqs secs
	if [ "$S3R" = 1 ]; then
		taskset -c 1 "$OUT/loadgen" -mode conn -addr "127.0.0.1:$port" -conns 64 -resume -duration "${DUR}s" >"$OUT/$name.load" 2>&1
		reqs=$(sed -n 's/^RESULT .*"requests":\([0-9]*\).*/\1/p' "$OUT/$name.load")
	else
		taskset -c 1 wrk -t1 -c64 -d"${DUR}s" "${close[@]}" "https://127.0.0.1:$port/" >"$OUT/$name.load" 2>&1
		reqs=$(awk '/requests in/ {print $1}' "$OUT/$name.load")
	fi
	wait "$prof"
	c1=$(cpu_ticks "$pid")
	curl -s -o "$OUT/$name.allocs.pprof" "http://$pprof/debug/pprof/allocs"
	secs=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}')
	echo "$name: $reqs requests in ${DUR}s, ${secs} CPU-s: $(awk -v r="$reqs" -v s="$secs" 'BEGIN {printf "%.0f", r / s}') per CPU-second"
}
run sluice "$sluice_pid" 19543 127.0.0.1:19591
run tlsbare "$bare_pid" 19544 127.0.0.1:19592
run tlsproxy "$proxy_pid" 19545 127.0.0.1:19593
for name in sluice tlsbare tlsproxy; do
	echo "== $name: CPU, top 30 by flat"
	go tool pprof -top -nodecount=30 "$OUT/$name.cpu.pprof" 2>/dev/null | sed -n '1,40p'
	echo "== $name: allocations (space), top 15"
	go tool pprof -sample_index=alloc_space -top -nodecount=15 "$OUT/$name.allocs.pprof" 2>/dev/null | sed -n '1,25p'
done
