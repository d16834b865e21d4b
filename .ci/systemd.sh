#!/usr/bin/env bash
# The systemd units: configs/sluice.service and sluice.socket must pass
# `systemd-analyze verify`, and the service must rate "OK" (exposure 2.0 or
# less) in `systemd-analyze security`. Installs systemd's tools with apt-get
# when they are missing. (systemd is not PID 1 here, so the units are
# checked, not run; TestNotify and TestSocketActivation run sluice's side of
# the protocol.)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null; then
	echo "systemd: installing systemd (for systemd-analyze)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/sluice" ./cmd/sluice
# verify checks that the commands exist: point them at the binary just built.
sed "s|/usr/local/bin/sluice|$work/sluice|g" configs/sluice.service >"$work/sluice.service"
cp configs/sluice.socket "$work/"
fail=0
if out=$(systemd-analyze verify "$work/sluice.service" "$work/sluice.socket" 2>&1) && [ -z "$out" ]; then
	echo "ok   systemd-analyze verify: sluice.service, sluice.socket"
else
	echo "FAIL systemd-analyze verify:"; echo "$out"; fail=1
fi
level=$(systemd-analyze security --offline=true configs/sluice.service 2>/dev/null | sed -n 's/.*Overall exposure level for sluice.service: \([0-9.]*\).*/\1/p')
if systemd-analyze security --offline=true --threshold=20 configs/sluice.service >/dev/null 2>&1; then
	echo "ok   systemd-analyze security: exposure $level (OK band)"
else
	echo "FAIL systemd-analyze security: exposure $level, above 2.0"; fail=1
fi
echo "systemd: $((2 - fail)) passed, $fail failed"
exit $fail
