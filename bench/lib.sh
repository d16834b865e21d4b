# Sourced by the scripts that start sluice and its loads by hand
# (bench/ab.sh, profile-s3.sh, library-s3.sh, pgo.sh, k6/run.sh,
# .ci/testssl.sh).

# wait_ports PORT...: waits until something listens on each loopback port,
# up to 10 s in all for each, and fails naming the first that never opened
# (a process that did not start: its log says why).
wait_ports() {
	local port
	for port in "$@"; do
		for _ in $(seq 200); do
			(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue 2
			sleep 0.05
		done
		echo "$(basename "$0"): nothing listens on 127.0.0.1:$port after 10 s; see the logs of what should" >&2
		return 1
	done
}

# cpu_ticks PID: the user and system clock ticks PID has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# kill_on_exit: from now on, the PIDs the script appends to pids (the
# processes it started, and only those) are killed when it exits.
kill_on_exit() {
	pids=()
	trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
}
