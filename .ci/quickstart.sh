#!/usr/bin/env bash
# The README's Quickstart, run exactly as written, so that it stays true:
# the ```sh block after the "<!-- quickstart" comment is extracted from
# README.md and run with bash -e in a clean copy of the repository (its
# files as git sees them, without bin/ or any earlier certificate), on
# loopback. Every command must succeed, the output must show each step
# worked, and both processes the block starts must exit 0 when it stops
# them. Also checks that `make run` starts the demo backend where
# configs/sluice.toml sends.
#
# Needs curl (installed with apt-get if missing) and 127.0.0.1:8888 and
# 127.0.0.1:9222 free, the Quickstart's ports. KEEP=1 keeps the scratch
# directory; QUICKSTART_DEADLINE=N stops the block after N s (default 60).
# About 5 s with a warm build cache. Needs bash 5.1 or later (wait -n -p).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v curl >/dev/null; then
	echo "quickstart: installing curl"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null
fi

fail() {
	echo "quickstart: FAIL: $*" >&2
	exit 1
}

# `make run` has no address variables any more: its demo backend must
# listen where configs/sluice.toml's upstream sends, and its messages must
# name that file's listener.
demo_addr=$(sed -n 's/.*demo-backend -listen \([^ ]*\).*/\1/p' Makefile)
grep -q "^servers = \[\"$demo_addr\"\]" configs/sluice.toml ||
	fail "make run starts the demo backend on '$demo_addr', but configs/sluice.toml's servers are: $(grep '^servers' configs/sluice.toml)"
listen_addr=$(sed -n 's/^address = "\(.*\)"/\1/p' configs/sluice.toml)
grep -q "https://$listen_addr/" Makefile ||
	fail "make run's messages do not name configs/sluice.toml's listener $listen_addr"
echo "ok   make run's addresses are configs/sluice.toml's ($demo_addr, $listen_addr)"

work=$(mktemp -d)
runner="" watchdog=""
cleanup() {
	# The block stops what it starts, and its EXIT trap stops, by PID, what
	# a failed command left running; this stops the block and the watchdog.
	for p in $runner $watchdog; do kill "$p" 2>/dev/null || true; done
	for p in $runner $watchdog; do wait "$p" 2>/dev/null || true; done
	if [ -n "${KEEP:-}" ]; then echo "quickstart: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The block(s): from the first ```sh fence after the marker to the closing
# fence. Only blank lines may separate marker and fence.
awk '
	/^<!-- quickstart/ { armed = 1; next }
	armed && /^```sh$/ { inside = 1; armed = 0; next }
	armed && !/^[[:space:]]*$/ { armed = 0 }
	inside && /^```$/ { inside = 0; blocks++; next }
	inside { print }
	END { if (!blocks || inside) exit 1 }
' README.md >"$work/block.sh" || fail "no complete \`\`\`sh block after <!-- quickstart --> in README.md"

for port in 8888 8889 9222; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		fail "127.0.0.1:$port is in use; the Quickstart needs it"
	fi
done

# A clean copy: tracked and new files (not ignored ones such as bin/),
# those deleted in the work tree left out.
mkdir "$work/repo"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
		tar --null -T - -cf - | tar -xf - -C "$work/repo"
else
	tar --exclude=./bin --exclude=./.git -cf - . | tar -xf - -C "$work/repo"
fi
[ ! -e "$work/repo/bin" ] || fail "the copy has a bin/ directory"

# bash -e, as the block is written for an interactive shell: no pipefail
# (the WebSocket curl ends at its --max-time, head's status is the line's).
# On TERM (the watchdog's) it exits, after the command at hand, and its
# EXIT trap stops the background jobs it started, by PID. A .curlrc bounds
# every curl of the block, so that "the command at hand" always ends.
{
	echo 'trap '\''for p in $(jobs -p); do kill "$p" 2>/dev/null; done; wait'\'' EXIT'
	echo 'trap '\''exit 143'\'' TERM'
	cat "$work/block.sh"
} >"$work/run.sh"
mkdir "$work/curlhome"
echo 'max-time = 10' >"$work/curlhome/.curlrc"

echo "quickstart: running the README's block in $work/repo"
deadline=${QUICKSTART_DEADLINE:-60} # seconds
start=$SECONDS
(cd "$work/repo" && CURL_HOME="$work/curlhome" exec bash -e "$work/run.sh") >"$work/out.log" 2>&1 &
runner=$!
# The block takes seconds (a build from a cold cache, some more); after
# $deadline it hangs. The watchdog's sleep is a deadline, not a
# synchronisation.
sleep "$deadline" &
watchdog=$!
status=0
wait -n -p first "$runner" "$watchdog" || status=$?
if [ "$first" = "$watchdog" ]; then
	watchdog=""
	echo "quickstart: the block still ran after $deadline s; stopping it"
	kill "$runner"
	wait "$runner" || true
	status=124
else
	kill "$watchdog"
	wait "$watchdog" || true
	watchdog=""
fi
runner=""
elapsed=$((SECONDS - start))

pass=0 failed=0
expect() { # name, fixed string the block's output must contain [, -x: as a whole line]
	if grep -qF ${3:-} -- "$2" "$work/out.log"; then
		echo "ok   $1"
		pass=$((pass + 1))
	else
		echo "FAIL $1: no '$2' in the output"
		failed=$((failed + 1))
	fi
}
if [ "$status" -eq 0 ]; then
	echo "ok   every command succeeded, both processes exited 0 (${elapsed}s)"
	pass=$((pass + 1))
else
	echo "FAIL the block exited $status after ${elapsed}s"
	failed=$((failed + 1))
fi
expect "sluice cert wrote the pair" "sluice: wrote certificate bin/quickstart.pem for localhost, 127.0.0.1"
expect "-check -v shows the listener" "listener name=wss address=127.0.0.1:8888 tls=yes"
expect "-check -v shows the certificate's names" "certificate cert=bin/quickstart.pem names=localhost,127.0.0.1"
expect "-check -v shows the upstream" "upstream name=appserver balance=round_robin send_proxy=v2 "
expect "-check -v shows its server" " servers=127.0.0.1:9222"
expect "-check passes" "sluice: configuration file configs/quickstart.toml is ok"
expect "healthz through sluice" "ok" -x
expect "the demo page through sluice, with the client address" '<code id="remote">127.0.0.1:'
expect "WebSocket upgrade through sluice" "HTTP/1.1 101 Switching Protocols"
expect "access log of a routed connection" "route=app upstream=appserver"
expect "the WebSocket reached the app server" 'msg="websocket opened"'
expect "sluice drained and stopped" 'msg="sluice stopped"'
expect "the metrics endpoint counts the connections" 'sluice_listener_accepted_connections_total{listener="wss"} '
expect "the metrics endpoint counts the bytes" 'sluice_listener_received_bytes_total{listener="wss"} '
for port in 8888 8889 9222; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "FAIL 127.0.0.1:$port still accepts after the block stopped its processes"
		failed=$((failed + 1))
	fi
done

echo "quickstart: $pass passed, $failed failed"
if [ "$failed" -gt 0 ]; then
	echo "--- the block's output"
	cat "$work/out.log"
	exit 1
fi
