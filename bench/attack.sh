#!/usr/bin/env bash
# bench/attack.sh: what sluice's defences buy under attack, measured.
#
#   bench/attack.sh [-quick] [-out FILE]
#
# sluice runs pinned to CPU 0 with GOMAXPROCS=1; the attackers, the
# well-behaved client (loadgen -mode probe, from 127.0.0.1) and the demo
# backend run on CPU 1. Each phase starts a fresh sluice with its own
# configuration:
#
#   A    the probe alone (the baseline of the ratios)
#   B    a handshake flood (loadgen -mode flood) from 127.0.0.2-127.0.0.20,
#        no defence
#   C4   the same flood, max_handshakes = 4
#   C16  the same flood, max_handshakes = 16
#   D    the same flood from one address (127.0.0.2), rate_per_ip = 20,
#        rate_burst = 40 (the probe every 100 ms, under that rate)
#   D19  the flood from its 19 addresses again, with D's limits
#   E    N silent TCP connections (loadgen -mode hold -plain: connect, send
#        nothing) held against the TLS listener, handshake_timeout = "5s":
#        sluice's RSS, descriptors and goroutines over time, the probe
#        meanwhile, and how many connections sluice closed, and when
#
# and writes a markdown report to -out (default bench/results/attack.md).
# Every load is bounded in time; the script stops only the processes it
# started, by PID. Absolute figures drift on a shared machine: only the
# ratios to phase A of the same run mean anything. -quick makes every
# phase a few seconds and E 1,000 connections (for CI; under 90 s).
set -euo pipefail
cd "$(dirname "$0")/.."

out=bench/results/attack.md
quick=0
while [ $# -gt 0 ]; do
	case $1 in
	-quick) quick=1 ;;
	-out)
		[ $# -ge 2 ] || { echo "attack: -out needs a file" >&2; exit 2; }
		out=$2
		shift
		;;
	*) echo "usage: bench/attack.sh [-quick] [-out FILE]" >&2; exit 2 ;;
	esac
	shift
done

if [ "$quick" = 1 ]; then
	probe_s=3 warm_s=1 silent=1000 hold_max_s=14
else
	probe_s=15 warm_s=2 silent=10000 hold_max_s=75
fi
flood_conns=64
flood_src=127.0.0.2-127.0.0.20
cpus=$(nproc)
if [ "$cpus" -lt 2 ]; then
	echo "attack: needs 2 CPUs (sluice on one, the load on the other)" >&2
	exit 1
fi
need=()
command -v taskset >/dev/null || need+=(util-linux)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
command -v ss >/dev/null || need+=(iproute2)
command -v awk >/dev/null || need+=(gawk)
if [ ${#need[@]} -gt 0 ]; then
	echo "attack: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- processes: every one we start is in pids, and only those are stopped.
pids=()
stop_pid() { # stop_pid PID: SIGTERM, SIGKILL after 5 s, reap
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local pid
	for pid in "${pids[@]}"; do stop_pid "$pid"; done
	pids=()
	exec 7>&- 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
forget() { # forget PID: drop it from pids once stopped
	local keep=() p
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}

start=$(date +%s)
work=bin/attack
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"
go build -trimpath -o bin/sluice ./cmd/sluice
go build -o bin/loadgen ./bench/loadgen
bin/sluice cert -names localhost,127.0.0.1 -cert "$work/cert.pem" -key "$work/key.pem" -force >/dev/null
ulimit -n "$(ulimit -Hn)"
# From here on this shell and what it starts run on CPU 1, except sluice
# (taskset -c 0): the sampling in phase E must not take sluice's CPU.
taskset -cp 1 $$ >/dev/null

# free_port: a TCP port below the ephemeral range (where the flood's and
# sluice's own connections take theirs) that no socket uses.
eph_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range)
free_port() {
	local p
	while :; do
		p=$((10000 + RANDOM % (eph_low - 10000)))
		[ -z "$(ss -Htan "sport = :$p")" ] && { echo "$p"; return; }
	done
}
backend_port=$(free_port)
taskset -c 1 bin/sluice demo-backend -listen "127.0.0.1:$backend_port" >"$work/backend.log" 2>&1 &
backend_pid=$!
pids+=("$backend_pid")

# --- sluice
tls_port= admin_port= sluice_pid=
# start_sluice PHASE TOP LISTENER: a fresh sluice; TOP and LISTENER are
# extra top-level and [[listener]] lines.
start_sluice() {
	local phase=$1 top=$2 listener=$3 conf=$work/$1.toml i
	tls_port=$(free_port)
	admin_port=$(free_port)
	cat >"$conf" <<-EOF
		# bench/attack.sh phase $phase
		drain_timeout = "2s"
		$top
		[log]
		level = "info"
		[admin]
		address = "127.0.0.1:$admin_port"

		[[listener]]
		name = "tls"
		address = "127.0.0.1:$tls_port"
		idle_timeout = "10m"
		$listener
		[listener.tls]
		certificates = [{ cert = "$work/cert.pem", key = "$work/key.pem" }]
		min_version = "1.3"
		session_tickets = false
		[[listener.route]]
		upstream = "demo"

		[[upstream]]
		name = "demo"
		servers = ["127.0.0.1:$backend_port"]
	EOF
	bin/sluice -check -config "$conf" >/dev/null
	GOMAXPROCS=1 taskset -c 0 bin/sluice -config "$conf" >"$work/$phase.sluice.log" 2>&1 &
	sluice_pid=$!
	pids+=("$sluice_pid")
	for i in $(seq 100); do
		curl -fs -o /dev/null "http://127.0.0.1:$admin_port/readyz" && return 0
		kill -0 "$sluice_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "attack: sluice did not start; its log:" >&2
	cat "$work/$phase.sluice.log" >&2
	exit 1
}
# stop_sluice PHASE: scrape the reasons from /metrics, stop sluice, and
# check that it exited cleanly.
stop_sluice() {
	local phase=$1 rc=0
	curl -fs "http://127.0.0.1:$admin_port/metrics" >"$work/$phase.metrics" || true
	kill -TERM "$sluice_pid"
	wait "$sluice_pid" || rc=$?
	forget "$sluice_pid"
	if [ "$rc" != 0 ]; then
		echo "attack: phase $phase: sluice exited with status $rc" >&2
		crashes+=("$phase: exit status $rc (log: $work/$phase.sluice.log)")
	fi
	if grep -q -e '^panic:' -e '^fatal error:' "$work/$phase.sluice.log"; then
		crashes+=("$phase: panic in $work/$phase.sluice.log")
	fi
}
crashes=()

# sluice's state: VmRSS (KiB), open descriptors, goroutines.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$sluice_pid/status"; }
fds() { ls "/proc/$sluice_pid/fd" | wc -l; }
goroutines() {
	{ curl -fs -m 5 "http://127.0.0.1:$admin_port/metrics" || true; } |
		awk '/^go_goroutines / {n = $2} END {print (n == "" ? "?" : n)}'
}

# --- loadgen
# flood PHASE SRC SECONDS: a flood in the background; its pid in flood_pid.
flood() {
	taskset -c 1 bin/loadgen -mode flood -addr "127.0.0.1:$tls_port" -conns "$flood_conns" \
		-src "$2" -duration "${3}s" -timeout "$(($3 + 30))s" \
		>"$work/$1.flood.out" 2>"$work/$1.flood.err" &
	flood_pid=$!
	pids+=("$flood_pid")
}
# probe PHASE INTERVAL: the well-behaved client, in the foreground.
probe() {
	taskset -c 1 bin/loadgen "${probe_args[@]}" -interval "$2" -addr "127.0.0.1:$tls_port" \
		>"$work/$1.probe.out" 2>"$work/$1.probe.err"
}
probe_args=(-mode probe -src 127.0.0.1 -duration "${probe_s}s" -timeout "$((probe_s + 30))s")
result() { sed -n 's/^RESULT //p' "$1"; }

# probe_phase PHASE DESCRIPTION TOP LISTENER FLOOD_SRC [INTERVAL]: one
# phase of the flood kind ("" FLOOD_SRC: no flood), the probe every
# INTERVAL (20ms).
probe_phase() {
	local phase=$1 src=$5 interval=${6:-20ms}
	echo "attack: phase $phase: $2" >&2
	desc[$phase]=$2
	start_sluice "$phase" "$3" "$4"
	if [ -n "$src" ]; then
		flood "$phase" "$src" $((warm_s + probe_s + 1))
		sleep "$warm_s"
	fi
	probe "$phase" "$interval"
	if [ -n "$src" ]; then
		wait "$flood_pid"
		forget "$flood_pid"
	fi
	stop_sluice "$phase"
}
declare -A desc

probe_phase A "probe alone" "" "" ""
probe_phase B "flood from 19 addresses, no defence" "" "" "$flood_src"
probe_phase C4 "flood, max_handshakes = 4" "max_handshakes = 4" "" "$flood_src"
probe_phase C16 "flood, max_handshakes = 16" "max_handshakes = 16" "" "$flood_src"
# The probe's 50 new connections a second would trip rate_per_ip = 20 by
# themselves: in D it probes every 100 ms (10 a second).
probe_phase D "flood from 127.0.0.2 only, rate_per_ip = 20, rate_burst = 40; probe every 100 ms" "" \
	"rate_per_ip = 20
rate_burst = 40" 127.0.0.2 100ms
probe_phase D19 "flood from 19 addresses, rate_per_ip = 20, rate_burst = 40; probe every 100 ms" "" \
	"rate_per_ip = 20
rate_burst = 40" "$flood_src" 100ms

# --- E: silent connections
phase=E
desc[E]="$silent silent TCP connections, handshake_timeout = 5s"
echo "attack: phase E: ${desc[E]}" >&2
start_sluice E "" 'handshake_timeout = "5s"'
sample() { # sample LABEL: one line of the E time series
	local est synrecv
	est=$(ss -Htn state established "( sport = :$tls_port )" | wc -l)
	synrecv=$(ss -Htn state syn-recv "( sport = :$tls_port )" | wc -l)
	echo "$1 $(date +%s.%N | cut -c1-14) $(rss_kib) $(fds) $(goroutines) $est $synrecv $(closed_by_peer)" >>"$work/E.series"
}
# closed_by_peer: the hold loadgen's live count, from its progress line.
closed_by_peer() {
	tr '\r' '\n' <"$work/E.hold.err" | sed -n 's/.*(\([0-9]*\) closed by peer).*/\1/p' | tail -1 | grep . || echo 0
}
: >"$work/E.hold.err"
echo "# label unix_time rss_kib fds goroutines server_established server_syn_recv closed_by_peer" >"$work/E.series"
sample before
before_rss=$(rss_kib) before_fds=$(fds) before_gor=$(goroutines)
mkfifo "$work/E.stdin"
taskset -c 1 bin/loadgen -mode hold -plain -addr "127.0.0.1:$tls_port" -conns "$silent" \
	-src "$flood_src" -dial-timeout 10s -timeout "$((hold_max_s + 60))s" \
	<"$work/E.stdin" >"$work/E.hold.out" 2>"$work/E.hold.err" &
hold_pid=$!
pids+=("$hold_pid")
exec 7>"$work/E.stdin" # held open: EOF releases the connections
hold_t0=$(date +%s.%N)
for _ in $(seq 600); do
	grep -q '^READY ' "$work/E.hold.out" && break
	kill -0 "$hold_pid" 2>/dev/null || break
	sleep 0.1
done
ready_s=$(awk -v a="$hold_t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
sample ready
# The probe runs while the connections are held; sample once a second
# meanwhile, and on until every connection is closed or hold_max_s passes.
taskset -c 1 bin/loadgen "${probe_args[@]}" -interval 20ms -addr "127.0.0.1:$tls_port" >"$work/E.probe.out" 2>"$work/E.probe.err" &
probe_pid=$!
pids+=("$probe_pid")
peak_rss=0 peak_fds=0 peak_gor=0
bigger() { awk -v a="$1" -v b="$2" 'BEGIN {print (a ~ /^[0-9]+$/ && a + 0 > b + 0) ? a : b}'; }
for _ in $(seq "$hold_max_s"); do
	sleep 1
	sample held
	read -r _ _ r f g est syn c < <(tail -1 "$work/E.series")
	peak_rss=$(bigger "$r" "$peak_rss") peak_fds=$(bigger "$f" "$peak_fds") peak_gor=$(bigger "$g" "$peak_gor")
	# Done once the probe is and neither sluice nor the kernel holds any of
	# them (the kernel may drop some without telling the client).
	if ! kill -0 "$probe_pid" 2>/dev/null &&
		{ [ "$(bigger "$c" 0)" -ge "$silent" ] || [ "$est$syn" = 00 ]; }; then
		break
	fi
done
wait "$probe_pid" || true
forget "$probe_pid"
exec 7>&- # EOF: loadgen closes what is left and prints DONE
wait "$hold_pid" || true
forget "$hold_pid"
sleep 2
sample after
after_rss=$(rss_kib) after_fds=$(fds) after_gor=$(goroutines)
stop_sluice E

# --- report
ms() { jq -r "$2" <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "–" }'; }
declare -A reasons_log reasons_metric
# reasons_of PHASE: "reason=count, ..." from sluice's log (access lines,
# plus the N of "suppressed=N" and of the "limit refused connections ...
# refused=N" warnings) and from /metrics.
reasons_of() {
	reasons_log[$1]=$(
		awk '{
			r = ""; n = 0; lim = ""; ref = 0
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^reason=/) r = substr($i, 8)
				if ($i ~ /^suppressed=/) n += substr($i, 12)
				if ($i ~ /^limit=/) lim = substr($i, 7)
				if ($i ~ /^refused=/) ref = substr($i, 9)
			}
			if (/msg=access /) n++
			if (r != "") s[r] += n
			if (/msg="limit refused connections"/) s[lim] += ref
		} END { for (r in s) print r, s[r] }' "$work/$1.sluice.log" |
			sort | awk '{printf "%s%s=%d", (NR > 1 ? ", " : ""), $1, $2}'
	)
	reasons_metric[$1]=$(
		awk '/^sluice_connections_closed_total\{/ {
			match($0, /reason="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9)
			s[r] += $NF
		} END { for (r in s) if (s[r] > 0) print r, s[r] }' "$work/$1.metrics" |
			sort | awk '{printf "%s%s=%d", (NR > 1 ? ", " : ""), $1, $2}'
	)
}

a=$(result "$work/A.probe.out")
a_np50=$(ms "$a" .new.p50_ms) a_np99=$(ms "$a" .new.p99_ms)
a_ep50=$(ms "$a" .established.p50_ms) a_ep99=$(ms "$a" .established.p99_ms)
{
	echo "# sluice under attack ($( [ "$quick" = 1 ] && echo "quick run" || echo "full run"))"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(git describe --tags --always --dirty 2>/dev/null || echo dev), $cpus CPUs."
	echo "sluice on CPU 0 (GOMAXPROCS=1); attackers, probe and demo backend on CPU 1."
	echo "Probe: from 127.0.0.1 every 20 ms (D: 100 ms) for ${probe_s}s, a new TLS 1.3 connection with"
	echo "one GET / (\"new\": connect + handshake + request + response) and one GET / on a kept"
	echo "connection (\"est.\"). Flood: loadgen -mode flood -conns $flood_conns (full handshakes, no"
	echo "resumption, close), started ${warm_s}s before the probe. Latencies in ms; ×A is the ratio"
	echo "to phase A of this run, the only comparison that means anything on a shared machine."
	echo
	echo "| phase | setup | new p50 | new p99 | est. p50 | est. p99 | new p50 ×A | new p99 ×A | est. p50 ×A | est. p99 ×A | probe failures (new/est.) | flood handshakes/s | flood failures (refused/reset/timeout/other) |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for p in A B C4 C16 D D19 E; do
		r=$(result "$work/$p.probe.out")
		if [ -z "$r" ]; then
			echo "| $p | ${desc[$p]} | probe printed no RESULT (see $work/$p.probe.err) |||||||||||"
			continue
		fi
		np50=$(ms "$r" .new.p50_ms) np99=$(ms "$r" .new.p99_ms)
		ep50=$(ms "$r" .established.p50_ms) ep99=$(ms "$r" .established.p99_ms)
		fails="$(ms "$r" .new.failed)/$(ms "$r" .established.failed)"
		f="–" ff="–"
		if [ -s "$work/$p.flood.out" ]; then
			fr=$(result "$work/$p.flood.out")
			f=$(ms "$fr" .handshakes_per_s | awk '{printf "%.0f", $1}')
			ff=$(jq -r '"\(.refused)/\(.reset)/\(.timeout)/\(.other)"' <<<"$fr")
		fi
		echo "| $p | ${desc[$p]} | $np50 | $np99 | $ep50 | $ep99 | $(ratio "$np50" "$a_np50") | $(ratio "$np99" "$a_np99") | $(ratio "$ep50" "$a_ep50") | $(ratio "$ep99" "$a_ep99") | $fails | $f | $ff |"
	done
	echo
	echo "## How sluice ended connections, per phase"
	echo
	echo "From sluice's log at level info: \`reason=\` of the access lines, plus the N of their"
	echo "\`suppressed=N\` (sluice logs at most 10 failed connections a second per reason) and, for"
	echo "max_handshakes and the per-client limits, whose access lines are at debug, the N of the"
	echo "\`limit refused connections ... refused=N\` warnings; and from"
	echo "\`sluice_connections_closed_total\` at the end of the phase."
	echo
	echo "| phase | log | /metrics |"
	echo "|---|---|---|"
	for p in A B C4 C16 D D19 E; do
		reasons_of "$p"
		echo "| $p | ${reasons_log[$p]:-none} | ${reasons_metric[$p]:-none} |"
	done
	echo
	echo "## E: $silent silent connections"
	echo
	h=$(sed -n 's/^DONE //p' "$work/E.hold.out")
	rd=$(sed -n 's/^READY //p' "$work/E.hold.out")
	echo "loadgen -mode hold -plain from $flood_src: READY $rd after ${ready_s}s;"
	echo "DONE $h."
	echo
	echo "| sluice | before | peak while held | 2 s after release |"
	echo "|---|---|---|---|"
	echo "| RSS (MiB) | $(awk -v k="$before_rss" 'BEGIN {printf "%.1f", k/1024}') | $(awk -v k="$peak_rss" 'BEGIN {printf "%.1f", k/1024}') | $(awk -v k="$after_rss" 'BEGIN {printf "%.1f", k/1024}') |"
	echo "| open descriptors | $before_fds | $peak_fds | $after_fds |"
	echo "| goroutines | $before_gor | $peak_gor | $after_gor |"
	echo
	echo "Sampled once a second, rows where nothing but RSS changed left out (t: seconds since the"
	echo "hold began; server_* are the kernel's sockets on sluice's port: established ones"
	echo "include those in the accept queue, syn_recv ones are held back by TCP_DEFER_ACCEPT):"
	echo
	echo "| t (s) | what | RSS (MiB) | fds | goroutines | server established | server syn_recv | closed by sluice (loadgen) |"
	echo "|---|---|---|---|---|---|---|---|"
	awk -v t0="$hold_t0" '!/^#/ {
		key = $4 " " $5 " " $6 " " $7 " " $8
		if (key == last && $1 == "held") next
		last = key
		t = $2 - t0; printf "| %.1f | %s | %.1f | %s | %s | %s | %s | %s |\n", (t < 0 ? 0 : t), $1, $3/1024, $4, $5, $6, $7, $8}' "$work/E.series"
	if [ ${#crashes[@]} -gt 0 ]; then
		echo
		echo "## sluice failures"
		echo
		printf -- '- %s\n' "${crashes[@]}"
	fi
	echo
	echo "Run time: $(($(date +%s) - start)) s. Raw outputs: $work/."
} >"$out"
echo "attack: wrote $out in $(($(date +%s) - start)) s" >&2
