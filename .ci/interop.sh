#!/usr/bin/env bash
# Interoperability with real peers, on loopback only:
#  1. sluice → nginx `listen ... proxy_protocol` (PROXY v2 and v1): nginx sees
#     the real client address ($proxy_protocol_addr).
#  2. sluice → HAProxy `bind ... accept-proxy` (PROXY v2): HAProxy sees the
#     real client address and the SNI and unique-id TLVs.
#  3. HAProxy `send-proxy-v2` → sluice `accept_proxy` → nginx: the client
#     address survives two hops.
#  4. the websocket.toml setup: a WebSocket upgrade through sluice to the demo
#     backend reading PROXY v2 (curl speaks the upgrade, the backend answers 101).
# The client uses source address 127.0.0.2 (or .3), so "the real client
# address" is distinguishable from sluice's own 127.0.0.1.
#
# Needs nginx, haproxy, curl (installed with apt-get if missing). KEEP=1 keeps
# the scratch directory with every log. Run with
# `make interop`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
	echo "interop: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

work=$(mktemp -d)
pids=()
# Whatever ends the script with a failure (a check, or a command under set -e),
# every log is printed before the scratch directory goes.
cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "$rc" -ne 0 ]; then
		for f in sluice.log websocket.log demo.log haproxy.log nginx/logs/error.log; do
			[ -f "$work/$f" ] && { echo "--- $f"; cat "$work/$f"; }
		done
	fi
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/sluice" ./cmd/sluice

# Ports: distinct, free, and below the ephemeral range (see .ci/freeports).
ports=$(.ci/freeports 12)
read -r NGINX_V2 NGINX_V1 HAPROXY_BE HAPROXY_FE SLUICE_NGINX_V2 SLUICE_NGINX_V1 SLUICE_HAPROXY \
	SLUICE_PP_IN SLUICE_WS DEMO SLUICE_ADMIN WSS <<<"$(echo $ports)"

mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 256; }
http {
  log_format pp 'client=\$proxy_protocol_addr peer=\$remote_addr "\$request" \$status';
  access_log $work/nginx/logs/access.log pp;
  client_body_temp_path $work/nginx/tmp;
  proxy_temp_path $work/nginx/tmp;
  fastcgi_temp_path $work/nginx/tmp;
  uwsgi_temp_path $work/nginx/tmp;
  scgi_temp_path $work/nginx/tmp;
  server {
    listen 127.0.0.1:$NGINX_V2 proxy_protocol;
    listen 127.0.0.1:$NGINX_V1 proxy_protocol;
    location / { return 200 "pp=\$proxy_protocol_addr remote=\$remote_addr\n"; }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)

cat >"$work/haproxy.cfg" <<EOF
global
  log stderr format short local0 info
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend pp_backend
  bind 127.0.0.1:$HAPROXY_BE accept-proxy
  log stdout format raw local0 info
  option httplog
  http-request return status 200 content-type text/plain lf-string "src=%[src] authority=%[fc_pp_authority] uid=%[fc_pp_unique_id]\n"
frontend lb
  mode tcp
  bind 127.0.0.1:$HAPROXY_FE
  default_backend to_sluice
backend to_sluice
  mode tcp
  # Health checks every 100 ms: with send-proxy-v2, HAProxy sends each
  # check a PROXY header and hangs up.
  server sluice 127.0.0.1:$SLUICE_PP_IN send-proxy-v2 check inter 100ms
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)

"$work/sluice" demo-backend -listen "127.0.0.1:$DEMO" -proxy >"$work/demo.log" 2>&1 &
pids+=($!)

cat >"$work/sluice.toml" <<EOF
drain_timeout = "2s"
[admin]
address = "127.0.0.1:$SLUICE_ADMIN"
[[listener]]
name = "to-nginx-v2"
address = "127.0.0.1:$SLUICE_NGINX_V2"
[listener.tls]
[[listener.route]]
upstream = "nginx-v2"

[[listener]]
name = "to-nginx-v1"
address = "127.0.0.1:$SLUICE_NGINX_V1"
[listener.tls]
[[listener.route]]
upstream = "nginx-v1"

[[listener]]
name = "to-haproxy"
address = "127.0.0.1:$SLUICE_HAPROXY"
[listener.tls]
[[listener.route]]
upstream = "haproxy"

[[listener]]
name = "behind-haproxy"
address = "127.0.0.1:$SLUICE_PP_IN"
accept_proxy = true
trusted_proxies = ["127.0.0.1/32"]
[listener.tls]
[[listener.route]]
upstream = "nginx-v2"

[[listener]]
name = "wss"
address = "127.0.0.1:$SLUICE_WS"
idle_timeout = "1h"
[listener.tls]
alpn = ["http/1.1"]
[[listener.route]]
websocket = true
upstream = "demo"
[[listener.route]]
upstream = "demo"

[[upstream]]
name = "nginx-v2"
servers = ["127.0.0.1:$NGINX_V2"]
send_proxy = "v2"
[[upstream]]
name = "nginx-v1"
servers = ["127.0.0.1:$NGINX_V1"]
send_proxy = "v1"
[[upstream]]
name = "haproxy"
servers = ["127.0.0.1:$HAPROXY_BE"]
send_proxy = "v2"
[[upstream]]
name = "demo"
servers = ["127.0.0.1:$DEMO"]
send_proxy = "v2"
protocols = ["http/1.1"]
EOF
"$work/sluice" -check -config "$work/sluice.toml"
"$work/sluice" -config "$work/sluice.toml" >"$work/sluice.log" 2>&1 &
sluice_pid=$!
pids+=($sluice_pid)

# Wait (bounded, 5 s) until a server accepts; a server that never does, or
# exits, fails the run here with its name instead of every check after it.
accepting() { # name, port
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "FAIL $1 does not accept on 127.0.0.1:$2"
	exit 1
}
accepting nginx "$NGINX_V2"
accepting "HAProxy (pp_backend)" "$HAPROXY_BE"
accepting "HAProxy (lb)" "$HAPROXY_FE"
accepting "demo backend" "$DEMO"
# Not SLUICE_PP_IN: it expects a PROXY header, and HAProxy checks it below.
for port in $SLUICE_NGINX_V2 $SLUICE_NGINX_V1 $SLUICE_HAPROXY $SLUICE_WS $SLUICE_ADMIN; do
	accepting sluice "$port"
done

# HAProxy checks sluice every 100 ms and marked it down while it was not
# listening yet: wait (bounded) until it has passed enough checks (rise 2)
# to be back in rotation.
for _ in $(seq 100); do
	curl -s --max-time 1 "http://127.0.0.1:$SLUICE_ADMIN/metrics" |
		grep -q '^sluice_listener_health_checks_total{listener="behind-haproxy"} \([3-9]\|[1-9][0-9]\)' && break
	sleep 0.05
done

pass=0 fail=0
check() { # name, expected substring, command...
	local name=$1 want=$2; shift 2
	local got
	got=$("$@" 2>&1 || true)
	if [[ $got == *"$want"* ]]; then
		echo "ok   $name"
		pass=$((pass + 1))
	else
		echo "FAIL $name: want '$want', got:"
		echo "$got" | sed 's/^/     /'
		fail=$((fail + 1))
	fi
}

C=(curl -sk --max-time 5)
check "nginx reads PROXY v2 from sluice" "pp=127.0.0.2 remote=127.0.0.1" \
	"${C[@]}" --interface 127.0.0.2 "https://127.0.0.1:$SLUICE_NGINX_V2/"
check "nginx reads PROXY v1 from sluice" "pp=127.0.0.2 remote=127.0.0.1" \
	"${C[@]}" --interface 127.0.0.2 "https://127.0.0.1:$SLUICE_NGINX_V1/"
check "HAProxy reads PROXY v2 with TLVs from sluice" "src=127.0.0.2 authority=localhost uid=" \
	"${C[@]}" --interface 127.0.0.2 --resolve "localhost:$SLUICE_HAPROXY:127.0.0.1" "https://localhost:$SLUICE_HAPROXY/"
check "HAProxy send-proxy-v2 → sluice accept_proxy → nginx" "pp=127.0.0.3 remote=127.0.0.1" \
	"${C[@]}" --interface 127.0.0.3 "https://127.0.0.1:$HAPROXY_FE/"
check "WebSocket upgrade through sluice (websocket route)" "101 Switching Protocols" \
	"${C[@]}" -i --http1.1 --max-time 2 -H "Connection: Upgrade" -H "Upgrade: websocket" \
	-H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
	--interface 127.0.0.2 "https://127.0.0.1:$SLUICE_WS/echo"
check "demo backend sees the client address through PROXY v2" "127.0.0.2" \
	"${C[@]}" --interface 127.0.0.2 "https://127.0.0.1:$SLUICE_WS/"

check "nginx logs the real client address" "client=127.0.0.2 peer=127.0.0.1" cat "$work/nginx/logs/access.log"
check "HAProxy logs the real client address" "127.0.0.2:" grep "pp_backend" "$work/haproxy.log"

# The unique id HAProxy saw is the conn id of sluice's access log.
uid=$("${C[@]}" --interface 127.0.0.2 --resolve "localhost:$SLUICE_HAPROXY:127.0.0.1" "https://localhost:$SLUICE_HAPROXY/" | sed -n 's/.*uid=\([^ ]*\).*/\1/p' || true)
check "PP2_TYPE_UNIQUE_ID matches the access log" "conn=$uid " grep "conn=$uid " "$work/sluice.log"
check "access log has the websocket route" "route=wss#0" cat "$work/sluice.log"

# HAProxy's health checks are counted as such, not logged as failed
# handshakes.
check "HAProxy's health checks are counted" 'sluice_listener_health_checks_total{listener="behind-haproxy"} ' \
	bash -c "${C[*]} http://127.0.0.1:$SLUICE_ADMIN/metrics | grep -E '^sluice_listener_health_checks_total\{listener=\"behind-haproxy\"\} [1-9]'"
check "and not logged as failed handshakes" "none" \
	bash -c "grep 'listener=behind-haproxy' '$work/sluice.log' | grep -q 'reason=handshake' && echo found || echo none"
check "/metrics parses as Prometheus text (HELP and TYPE lines)" "# TYPE sluice_connections_closed_total counter" \
	"${C[@]}" "http://127.0.0.1:$SLUICE_ADMIN/metrics"

# configs/websocket.toml itself, the nginx wss->ws setup, with only its
# address, certificate paths and app server moved onto loopback: a real
# WebSocket client echoes through it to the PROXY-v2-reading demo backend.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$work/app.key" -out "$work/app.pem" 2>/dev/null
sed -e "s|0.0.0.0:8888|127.0.0.1:$WSS|" -e "s|/etc/ssl/app.pem|$work/app.pem|" -e "s|/etc/ssl/app.key|$work/app.key|" \
	-e "s|192.168.100.10:9222|127.0.0.1:$DEMO|" configs/websocket.toml >"$work/websocket.toml"
check "configs/websocket.toml passes -check" "is ok" "$work/sluice" -check -config "$work/websocket.toml"
"$work/sluice" -config "$work/websocket.toml" >"$work/websocket.log" 2>&1 &
ws_pid=$!
pids+=($ws_pid)
accepting "sluice (configs/websocket.toml)" "$WSS"
go build -o "$work/loadgen" ./bench/loadgen
check "WebSocket echo through configs/websocket.toml" '"errors":0,"dropped_conns":0' \
	bash -c "echo GO | '$work/loadgen' -mode ws -url wss://127.0.0.1:$WSS/echo -conns 50 -active 1 -rate 10 -duration 2s -src 127.0.0.5 2>/dev/null"
check "the app server saw the browser's address via PROXY v2" 'msg="websocket opened" remote=127.0.0.5:' cat "$work/demo.log"
kill -TERM "$ws_pid"

kill -TERM "$sluice_pid"
wait "$sluice_pid" && echo "ok   sluice exits 0 on SIGTERM" && pass=$((pass + 1)) || { echo "FAIL sluice exit status $?"; fail=$((fail + 1)); }

echo "interop: $pass passed, $fail failed"
[ "$fail" -eq 0 ] || exit 1
