#!/usr/bin/env bash
# S3's gap, split between the TLS library and the proxying: full TLS 1.3
# handshakes (wrk, Connection: close, 64 connections) per CPU-second of
# four servers on CPU 0 (wrk and the backend on CPU 1), two at a time,
# each pair loaded at once so that the machine's swings fall on both:
#
#   tlsbare      crypto/tls answering from memory (bench/tlsbare)
#   nginx-bare   OpenSSL answering from memory (nginx's http return 200)
#   sluice       crypto/tls, relaying to the backend
#   nginx        OpenSSL, relaying to the backend (stream proxy_pass, as
#                in make bench)
#
# The two bare servers differ by their TLS library and web server; each
# proxy costs its bare server plus its proxying. So sluice's proxying costs
# (sluice - tlsbare) and nginx's (nginx - nginx-bare), in µs of CPU per
# connection; the script prints both, and the libraries' difference, each
# also split between user and system time.
#
#   bash bench/library-s3.sh [OUT]   (REPS=3 rounds, DUR=8 s each)
#
# Needs wrk and nginx with its stream module (bench/run.sh installs them).
# Stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
OUT=${1:-bin/library-s3}
REPS=${REPS:-3} DUR=${DUR:-8}
mkdir -p "$OUT"
go build -o "$OUT/sluice" ./cmd/sluice
go build -o "$OUT/tlsbare" ./bench/tlsbare
"$OUT/sluice" cert -names localhost -cert "$OUT/cert.pem" -key "$OUT/key.pem" -force >/dev/null

kill_on_exit

taskset -c 1 "$OUT/sluice" demo-backend -listen 127.0.0.1:19780 >"$OUT/backend.log" 2>&1 &
pids+=($!)
cat >"$OUT/sluice.toml" <<CONF
[log]
level = "warn"
[[listener]]
name = "tls"
address = "127.0.0.1:19743"
[listener.tls]
certificates = [{ cert = "$OUT/cert.pem", key = "$OUT/key.pem" }]
min_version = "1.3"
session_tickets = false
[[listener.route]]
upstream = "http"
[[upstream]]
name = "http"
servers = ["127.0.0.1:19780"]
CONF
# The same TLS settings as make bench's nginx (bench/peers/nginx.conf);
# the bare server's body is tlsbare's: 200 bytes.
body=$(head -c 200 /dev/zero | tr '\0' x)
tls="ssl_certificate $OUT/cert.pem; ssl_certificate_key $OUT/key.pem;
  ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
  ssl_session_cache off; ssl_session_tickets off;"
cat >"$OUT/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
error_log $OUT/nginx-error.log error;
pid $OUT/nginx.pid;
events { worker_connections 4096; multi_accept on; }
http {
  access_log off;
$tls
  client_body_temp_path $OUT;
  proxy_temp_path $OUT;
  fastcgi_temp_path $OUT;
  uwsgi_temp_path $OUT;
  scgi_temp_path $OUT;
  server { listen 127.0.0.1:19745 ssl backlog=65535; location / { return 200 "$body"; } }
}
stream {
$tls
  server { listen 127.0.0.1:19746 ssl backlog=65535; proxy_pass 127.0.0.1:19780; }
}
CONF
GOMAXPROCS=1 taskset -c 0 "$OUT/tlsbare" -listen 127.0.0.1:19744 -cert "$OUT/cert.pem" -key "$OUT/key.pem" >"$OUT/tlsbare.log" 2>&1 &
pids+=($!)
bare_pid=$!
GOMAXPROCS=1 taskset -c 0 "$OUT/sluice" -config "$OUT/sluice.toml" >"$OUT/sluice.log" 2>&1 &
pids+=($!)
sluice_pid=$!
taskset -c 0 nginx -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" >"$OUT/nginx.log" 2>&1 &
pids+=($!)
nginx_pid=$!
wait_ports 19743 19744 19745 19746 19780

hz=$(getconf CLK_TCK)
# pair NAME1 PID1 PORT1 NAME2 PID2 PORT2: loads both servers at once, a
# wrk each (both on CPU 1), so that whatever the machine does meanwhile
# falls on both alike; records each one's handshakes per CPU-second.
declare -A rate user
# user_ticks PID: the user clock ticks alone, to split each one's CPU
# between its own code (user) and the kernel's (system).
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
pair() {
	local names=("$1" "$4") procs=("$2" "$5") ports=("$3" "$6") c0=() c1=() u0=() u1=() w=() i r n
	for i in 0 1; do c0[i]=$(cpu_ticks "${procs[i]}") u0[i]=$(user_ticks "${procs[i]}"); done
	for i in 0 1; do
		taskset -c 1 wrk -t1 -c64 -d"${DUR}s" -H "Connection: close" "https://127.0.0.1:${ports[i]}/" >"$OUT/wrk$i.out" 2>&1 &
		w[i]=$!
	done
	wait "${w[@]}"
	for i in 0 1; do c1[i]=$(cpu_ticks "${procs[i]}") u1[i]=$(user_ticks "${procs[i]}"); done
	for i in 0 1; do
		n=$(awk '/requests in/ {print $1}' "$OUT/wrk$i.out")
		r=$(awk -v r="$n" -v a="${c0[i]}" -v b="${c1[i]}" -v hz="$hz" 'BEGIN {printf "%.0f", r / ((b - a) / hz)}')
		rate[${names[i]}]+="$r "
		# µs of user CPU per connection
		user[${names[i]}]+="$(awk -v r="$n" -v a="${u0[i]}" -v b="${u1[i]}" -v hz="$hz" 'BEGIN {printf "%.1f", (b - a) / hz * 1e6 / r}') "
		line+=" ${names[i]} $r"
	done
}
for round in $(seq "$REPS"); do
	line="round $round:"
	pair tlsbare "$bare_pid" 19744 nginx-bare "$nginx_pid" 19745
	pair sluice "$sluice_pid" 19743 nginx "$nginx_pid" 19746
	echo "$line (handshakes per CPU-second)"
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
us() { awk -v r="$1" 'BEGIN {printf "%.1f", 1e6 / r}'; }
tb=$(echo "${rate[tlsbare]}" | median) nb=$(echo "${rate[nginx-bare]}" | median)
sl=$(echo "${rate[sluice]}" | median) ng=$(echo "${rate[nginx]}" | median)
tu=$(echo "${user[tlsbare]}" | median) nu=$(echo "${user[nginx-bare]}" | median)
su=$(echo "${user[sluice]}" | median) gu=$(echo "${user[nginx]}" | median)
echo "medians, handshakes per CPU-second: tlsbare $tb ($(us "$tb") µs each), nginx-bare $nb ($(us "$nb") µs), sluice $sl ($(us "$sl") µs), nginx $ng ($(us "$ng") µs)"
awk -v tb="$tb" -v nb="$nb" -v sl="$sl" -v ng="$ng" 'BEGIN {
	printf "the TLS library and server: crypto/tls %+.1f µs per handshake against OpenSSL in nginx\n", 1e6 / tb - 1e6 / nb
	printf "the proxying: sluice %.1f µs per connection, nginx %.1f\n", 1e6 / sl - 1e6 / tb, 1e6 / ng - 1e6 / nb
	printf "sluice / nginx, handshakes per CPU-second: %.3f\n", sl / ng
}'
awk -v tb="$tb" -v nb="$nb" -v sl="$sl" -v ng="$ng" -v tu="$tu" -v nu="$nu" -v su="$su" -v gu="$gu" 'BEGIN {
	printf "µs per connection, user + system: tlsbare %.1f + %.1f, nginx-bare %.1f + %.1f, sluice %.1f + %.1f, nginx %.1f + %.1f\n", tu, 1e6 / tb - tu, nu, 1e6 / nb - nu, su, 1e6 / sl - su, gu, 1e6 / ng - gu
	printf "the proxying, user + system: sluice %.1f + %.1f, nginx %.1f + %.1f\n", su - tu, (1e6 / sl - su) - (1e6 / tb - tu), gu - nu, (1e6 / ng - gu) - (1e6 / nb - nu)
}'
