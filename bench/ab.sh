#!/usr/bin/env bash
# A/B: two sluice binaries side by side in one run, the way each change for
# issue 18 was judged. Both run the same configuration (that of make bench's
# sluice: TLS 1.3, tickets off unless RESUME=1) on CPU 0 with GOMAXPROCS=1,
# the demo backend and wrk on CPU 1; REPS rounds alternate A and B on S3
# (a full handshake per request, Connection: close) and S1 (keep-alive small
# requests), DUR seconds each, and print each run's requests per CPU-second
# and the median ratio B/A.
#
#   bash bench/ab.sh OLD_BINARY NEW_BINARY      (REPS=5 DUR=6 by default)
#   SCEN="S1" bash bench/ab.sh ...              only S1 (or S3)
#   SCEN="S5s" bash bench/ab.sh ...             WebSocket echo (or S5)
#   TOGETHER=1 bash bench/ab.sh ...              S3 and S1 load A and B at once
#
# With TOGETHER=1 each round runs a wrk against A and one against B at the
# same time, both sluices sharing CPU 0 and both wrks CPU 1: whatever the
# machine does meanwhile (a neighbour, the clock) falls on both alike,
# where rounds one after another see it fall on one. Handshakes or
# requests per CPU-second are each process's own.
#
# S5 and S5s are make bench's echo loads through one sluice at a time
# (bin/loadgen, CONNS=9744 wss:// connections: raise the open-files limit
# to twice that): a tenth of them echoing once a second for 15 s, or every
# one every 10 s for 25 s. They print echoes per CPU-second of sluice over
# the echo phase, and the echo p99. LOAD replaces their loadgen flags,
# e.g. LOAD="-active 0.1 -rate 3 -duration 15s" for messages every 333 ms.
#
# Build the old binary from a commit with
#   git worktree add /tmp/old REV && (cd /tmp/old && go build -o /tmp/sluice-old ./cmd/sluice)
# Stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
A=$1 B=$2
REPS=${REPS:-5} DUR=${DUR:-6} SCEN=${SCEN:-"S3 S1"}
OUT=$(mktemp -d)
"$A" cert -names localhost -cert "$OUT/cert.pem" -key "$OUT/key.pem" >/dev/null

kill_on_exit
taskset -c 1 "$A" demo-backend -listen 127.0.0.1:19680 >"$OUT/backend.log" 2>&1 &
pids+=($!)
conf() { # PORT WS_PORT
	for l in "tls $1" "ws $2"; do
		set -- $l
		cat <<CONF
[[listener]]
name = "$1"
address = "127.0.0.1:$2"
idle_timeout = "10m"
[listener.tls]
certificates = [{ cert = "$OUT/cert.pem", key = "$OUT/key.pem" }]
min_version = "1.3"
session_tickets = false
[[listener.route]]
upstream = "http"
CONF
	done
	cat <<CONF
[log]
level = "warn"
[[upstream]]
name = "http"
servers = ["127.0.0.1:19680"]
CONF
}
conf 19643 19645 >"$OUT/a.toml"
conf 19644 19646 >"$OUT/b.toml"
GOMAXPROCS=1 taskset -c 0 "$A" -config "$OUT/a.toml" >"$OUT/a.log" 2>&1 &
pids+=($!)
apid=$!
GOMAXPROCS=1 taskset -c 0 "$B" -config "$OUT/b.toml" >"$OUT/b.log" 2>&1 &
pids+=($!)
bpid=$!
wait_ports 19643 19644 19645 19646 19680

hz=$(getconf CLK_TCK)
rate() { # WRK_OUTPUT CPU0 CPU1 -> requests per CPU-second, p99
	awk -v a="$2" -v b="$3" -v hz="$hz" '
		/requests in/ {r = $1}
		$1 == "99%" {p = $2}
		END {printf "%.0f %s\n", r / ((b - a) / hz), p}' "$1"
}
wrkto() { # PORT SCEN OUTPUT: one wrk load of the round
	local args=()
	[ "$2" = S3 ] && args=(-H "Connection: close")
	taskset -c 1 wrk -t1 -c64 -d"${DUR}s" --latency "${args[@]}" "https://127.0.0.1:$1/" >"$3" 2>&1
}
one() { # PID PORT SCEN -> requests per CPU-second, p99
	local c0 c1
	c0=$(cpu_ticks "$1")
	wrkto "$2" "$3" "$OUT/wrk"
	c1=$(cpu_ticks "$1")
	rate "$OUT/wrk" "$c0" "$c1"
}
both() { # SCEN -> A's and B's requests per CPU-second and p99, measured at once
	local ca0 cb0 ca1 cb1 wa wb
	ca0=$(cpu_ticks "$apid") cb0=$(cpu_ticks "$bpid")
	wrkto 19643 "$1" "$OUT/wrk.a" &
	wa=$!
	wrkto 19644 "$1" "$OUT/wrk.b" &
	wb=$!
	wait "$wa" "$wb"
	ca1=$(cpu_ticks "$apid") cb1=$(cpu_ticks "$bpid")
	echo "$(rate "$OUT/wrk.a" "$ca0" "$ca1") $(rate "$OUT/wrk.b" "$cb0" "$cb1")"
}
echoes() { # PID PORT SCEN -> echoes per CPU-second over the echo phase, p99
	local load line c0 c1 res msgs lg
	load=(-active 0.1 -rate 1 -duration 15s)
	[ "$3" = S5s ] && load=(-active 1 -rate 0.1 -duration 25s)
	[ -n "${LOAD:-}" ] && read -ra load <<<"$LOAD"
	coproc LG { taskset -c 1 bin/loadgen -mode ws -url "wss://127.0.0.1:$2/echo" -conns "${CONNS:-9744}" \
		"${load[@]}" -timeout 300s -src 127.0.0.2-127.0.0.40 2>/dev/null; }
	lg=$LG_PID # bash unsets LG_PID once the coprocess has ended
	while read -r line <&"${LG[0]}"; do
		case $line in
		READY*)
			# The connections' opening (handshakes, its GC) is not the
			# echo phase's: let it settle first, as make bench does.
			sleep 3
			c0=$(cpu_ticks "$1")
			echo GO >&"${LG[1]}"
			;;
		RESULT*)
			c1=$(cpu_ticks "$1")
			res=$line
			;;
		esac
	done
	wait "$lg" || true
	msgs=$(sed -n 's/.*"messages":\([0-9]*\).*/\1/p' <<<"$res")
	awk -v m="${msgs:-0}" -v a="${c0:-0}" -v b="${c1:-0}" -v hz="$hz" -v p="$(sed -n 's/.*"p99_ms":\([0-9.]*\).*/\1/p' <<<"$res")ms" \
		'BEGIN {if (b <= a || m == 0) {print "0 failed"; exit} printf "%.0f %s\n", m / ((b - a) / hz), p}'
}
case " $SCEN " in *" S5"*)
	go build -o bin/loadgen ./bench/loadgen
	;;
esac
for s in $SCEN; do
	ra=() rb=() rr=()
	run=one aport=19643 bport=19644
	case $s in S5 | S5s) run=echoes aport=19645 bport=19646 ;; esac
	for i in $(seq "$REPS"); do
		if [ "${TOGETHER:-0}" = 1 ] && [ "$run" = one ]; then
			read -r xa pa xb pb < <(both "$s")
		else
			read -r xa pa < <($run "$apid" $aport "$s")
			read -r xb pb < <($run "$bpid" $bport "$s")
		fi
		echo "$s round $i: A $xa/CPU-s (p99 $pa)  B $xb/CPU-s (p99 $pb)  B/A $(awk -v a="$xa" -v b="$xb" 'BEGIN {printf "%.3f", b / a}')"
		ra+=("$xa") rb+=("$xb") rr+=("$(awk -v a="$xa" -v b="$xb" 'BEGIN {printf "%.3f", b / a}')")
	done
	ma=$(printf '%s\n' "${ra[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
	mb=$(printf '%s\n' "${rb[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
	mr=$(printf '%s\n' "${rr[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
	echo "$s median: A $ma  B $mb per CPU-second; median of the rounds' B/A: $mr"
done
rm -rf "$OUT"
