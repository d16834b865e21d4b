#!/usr/bin/env bash
# TLS scan: Debian's testssl.sh against sluice, on loopback only, on two
# profiles:
#   default  [listener.tls] with only a certificate (TLS 1.2 and 1.3, the
#            default suites and curves, session tickets on)
#   strict   the same with min_version = "1.3"
# The certificate is an ECDSA P-256 leaf for localhost and 127.0.0.1 signed
# by a test CA that the scan trusts (--add-ca), valid 90 days, with a CRL
# distribution point (never fetched: no --phone-out), as a public
# certificate would be; so what the scan finds is about sluice's TLS, not
# about a self-signed certificate. sluice routes to the demo backend, so the
# HTTP checks (headers, BREACH) see an answer.
#
# Fails on any finding rated MEDIUM, HIGH or CRITICAL (and on a scan that
# did not finish); lists the LOW, INFO and WARN ones per profile (the README
# says why each is accepted). The JSON and the text output of each profile
# go to $TESTSSL_OUT (default bin/testssl, scratch).
#
# testssl never leaves 127.0.0.1: --ip 127.0.0.1 and --nodns none (no DNS
# lookup at all), and without --phone-out it fetches no CRL or OCSP.
#
# Needs testssl, openssl and python3 (testssl.sh is installed with apt-get
# if missing); uses bin/sluice (make build). KEEP=1 keeps the scratch
# directory with the certificates, the configuration and the logs. Run with
# `make testssl`; takes about 4 minutes on 2 cores (most of it testssl: each
# of its 370 ciphers, and 34 simulated clients, per profile).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

if ! command -v testssl >/dev/null; then
	echo "testssl: installing testssl.sh"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends testssl.sh >/dev/null
fi
for c in openssl python3 timeout; do
	command -v "$c" >/dev/null || { echo "testssl: $c is required" >&2; exit 1; }
done
sluice=${SLUICE:-bin/sluice}
[ -x "$sluice" ] || { echo "testssl: $sluice is missing: run make build" >&2; exit 1; }

out=${TESTSSL_OUT:-bin/testssl}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "${KEEP:-}" ] && echo "testssl: scratch directory kept: $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The test CA and the leaf it signs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 91 \
	-subj "/O=sluice test/CN=sluice test CA" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
	-keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-subj "/CN=localhost" -keyout "$work/leaf.key" -out "$work/leaf.csr" 2>/dev/null
cat >"$work/leaf.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
crlDistributionPoints = URI:http://crl.sluice-test-ca.invalid/ca.crl
EOF
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
	-days 90 -sha256 -extfile "$work/leaf.ext" -out "$work/leaf.pem" 2>/dev/null
openssl verify -purpose sslserver -CAfile "$work/ca.pem" "$work/leaf.pem" >/dev/null

# Ports: distinct, free, and below the ephemeral range (see .ci/freeports).
ports=$(.ci/freeports 3)
read -r DEMO DEFAULT STRICT <<<"$(echo $ports)"

cat >"$work/sluice.toml" <<EOF
drain_timeout = "1s"

[[listener]]
name = "default"
address = "127.0.0.1:$DEFAULT"
[listener.tls]
certificates = [{ cert = "$work/leaf.pem", key = "$work/leaf.key" }]
[[listener.route]]
upstream = "demo"

[[listener]]
name = "strict"
address = "127.0.0.1:$STRICT"
[listener.tls]
certificates = [{ cert = "$work/leaf.pem", key = "$work/leaf.key" }]
min_version = "1.3"
[[listener.route]]
upstream = "demo"

[[upstream]]
name = "demo"
servers = ["127.0.0.1:$DEMO"]
EOF
"$sluice" -check -config "$work/sluice.toml" >/dev/null
"$sluice" demo-backend -listen "127.0.0.1:$DEMO" >"$work/demo.log" 2>&1 &
pids+=($!)
"$sluice" -config "$work/sluice.toml" >"$work/sluice.log" 2>&1 &
pids+=($!)
wait_ports $DEMO $DEFAULT $STRICT

# One scan per profile. The options:
#   --ip 127.0.0.1 --nodns none  connect to loopback only, no DNS at all
#   localhost:PORT               so the SNI and the name checked against the
#                                certificate are localhost
#   --add-ca                     trust the test CA (every trust store checked)
#   --warnings batch             never stop to ask
#   --openssl-timeout, timeout   bound each handshake and the whole scan
fail=0
for profile in default strict; do
	port=$DEFAULT
	[ "$profile" = strict ] && port=$STRICT
	rm -f "$out/$profile.json" "$out/$profile.log"
	start=$(date +%s)
	rc=0
	timeout 300 testssl --quiet --color 0 --warnings batch --nodns none --ip 127.0.0.1 \
		--add-ca "$work/ca.pem" --connect-timeout 5 --openssl-timeout 10 \
		--jsonfile "$out/$profile.json" --logfile "$out/$profile.log" \
		"localhost:$port" >/dev/null 2>"$work/$profile.stderr" || rc=$?
	echo "testssl: profile $profile scanned in $(($(date +%s) - start))s (testssl exit status $rc)"
	if [ "$rc" -eq 124 ] || [ ! -s "$out/$profile.json" ]; then
		echo "testssl: profile $profile: the scan did not finish"
		cat "$work/$profile.stderr"
		fail=1
		continue
	fi
	python3 - "$profile" "$out/$profile.json" <<'EOF' || fail=1
import json, sys
profile, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    findings = json.load(f)
by_id = {f["id"]: f for f in findings}
# MEDIUM or worse fails; so do FATAL (testssl could not scan) and WARN (a
# check that could not finish), but for engine_problem: the scanner's own
# openssl has no GOST engine, which says nothing about the server.
problems = [f for f in findings
            if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL", "FATAL")
            or (f.get("severity") == "WARN" and f["id"] != "engine_problem")]
# The scan saw the profile it was meant to (TLS 1.3 offered; TLS 1.2
# offered on default, not on strict) and ran to the end.
want = {"TLS1_3": True, "TLS1_2": profile == "default"}
for fid, offered in want.items():
    got = by_id.get(fid, {}).get("finding", "missing")
    if got.startswith("offered") != offered:
        problems.append({"id": fid, "severity": "SETUP",
                         "finding": f"{got!r}, want {'offered' if offered else 'not offered'}"})
if "scanTime" not in by_id:
    problems.append({"id": "scanTime", "severity": "SETUP", "finding": "missing: the scan did not run to the end"})

def row(f):
    text = " ".join(str(f.get("finding", "")).split())
    if len(text) > 90:
        text = text[:87] + "..."
    return f"  {f['id']:<38} {f['severity']:<8} {text}"

for sev in ("LOW", "WARN", "INFO"):
    rest = [f for f in findings if f.get("severity") == sev and f not in problems]
    if rest:
        print(f"--- {profile}: {sev} ({len(rest)})")
        print("\n".join(row(f) for f in rest))
counts = {}
for f in findings:
    counts[f.get("severity")] = counts.get(f.get("severity"), 0) + 1
summary = ", ".join(f"{k} {counts[k]}" for k in ("CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "INFO", "OK") if k in counts)
if problems:
    print(f"--- {profile}: FAIL: {len(problems)} finding(s) MEDIUM or worse, or an incomplete scan")
    print("\n".join(row(f) for f in problems))
    sys.exit(1)
print(f"testssl: profile {profile}: no finding MEDIUM or worse ({summary})")
EOF
done

# sluice and the demo backend lived through both scans, and sluice logged
# no error (failed handshakes are INFO access lines).
for p in "${pids[@]}"; do
	kill -0 "$p" 2>/dev/null || { echo "testssl: process $p exited during the scans (KEEP=1 keeps its log)"; fail=1; }
done
if grep -E 'panic|level=ERROR' "$work/sluice.log"; then
	echo "testssl: sluice logged errors (above)"
	fail=1
fi

[ "$fail" -eq 0 ] || { echo "testssl: FAIL (JSON and text output in $out)"; exit 1; }
echo "testssl: both profiles passed (JSON and text output in $out)"
