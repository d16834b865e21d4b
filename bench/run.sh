#!/usr/bin/env bash
# make bench: install what is missing (wrk, nginx with the stream module,
# HAProxy, hitch) with apt-get, build sluice and the load generator, and run
# bench/runner, which starts and stops (by PID) everything it needs and writes
# bench/results/latest.md and latest.svg. Extra arguments go to the runner,
# e.g. bench/run.sh -scenarios S1,S4 -reps 1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v haproxy >/dev/null || need+=(haproxy)
command -v hitch >/dev/null || need+=(hitch)
if [ ${#need[@]} -gt 0 ]; then
	echo "bench: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ "$(nproc)" -lt 2 ]; then
	echo "bench: needs 2 CPUs (terminators on one, load on the other)" >&2
	exit 1
fi

go build -ldflags "-X main.version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)" -o bin/sluice ./cmd/sluice
go build -o bin/loadgen ./bench/loadgen
go build -o bin/tlsbare ./bench/tlsbare
go build -o bin/bench-runner ./bench/runner

# As many descriptors as the hard limit allows (the runner caps S4/S5 to it).
ulimit -n "$(ulimit -Hn)"
exec bin/bench-runner "$@"
