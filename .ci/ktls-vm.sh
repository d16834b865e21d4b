#!/usr/bin/env bash
# tlsterm's and l4's kernel-TLS tests inside real Debian kernels, under qemu (TCG, no
# KVM): this machine's kernel has no CONFIG_TLS, so this is where the kTLS
# paths actually run.
#
# For each kernel it downloads the kernel's .debs (apt-get download, never
# installed), resolves the modules the kTLS path needs with modprobe
# --show-depends, builds an uncompressed cpio initramfs holding the static
# tlsterm and l4 test binaries and tlsterm/vminit as /init, and boots it. vminit loads
# the modules, brings lo up, runs the tests and powers off; a kernel passes
# only if its guest prints "VMRESULT pass".
#
# Environment (all optional):
#   KTLS_KERNELS  kernels to boot, each SUITE or SUITE:PACKAGE; a trailing "?"
#                 makes one optional (skipped when it cannot be downloaded).
#                 Default "bookworm trixie-backports?": Debian 12's 6.1 cloud
#                 kernel and the newest trixie-backports one (6.14+: rekey).
#                 SUITE also takes SUITE-updates and SUITE-security; PACKAGE
#                 defaults to linux-image-cloud-amd64.
#   KTLS_RUN      the test binaries' arguments (default: vminit's,
#                 the kernel-TLS tests and l4's TLS tests); no
#                 argument may contain a space or a double quote.
#   KTLS_TIMEOUT  the guest's watchdog in seconds (default 300); qemu is
#                 stopped 30 s after it.
#   KTLS_MEM, KTLS_SMP  guest memory in MiB (512) and CPUs (2).
#   KTLS_OPENSSL  1 (the default when the host has openssl) puts openssl and
#                 its libraries into the guest, as a non-Go peer; 0 leaves it out.
#   KTLS_VERBOSE  1 prints the whole guest console, not only the test results.
#
# The apt lists and each kernel's vmlinuz and needed modules are cached
# under bin/ktls-vm/ (make clean removes them); the apt lists are refreshed
# once a day. Run it under flock on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

KERNELS=${KTLS_KERNELS:-"bookworm trixie-backports?"}
TIMEOUT=${KTLS_TIMEOUT:-300}
MEM=${KTLS_MEM:-512}
SMP=${KTLS_SMP:-2}
VERBOSE=${KTLS_VERBOSE:-0}
DIR=$PWD/bin/ktls-vm
APT=$DIR/apt
# The module names and aliases kTLS needs: the ULP, then the AEADs the tls
# module allocates ("gcm(aes)", "ccm(aes)", "rfc7539(chacha20,poly1305)")
# and what those templates ask for. The guest has no modprobe, so everything
# is loaded up front; aliases that a kernel has built in or lacks are skipped.
ALIASES=(tls 'crypto-gcm(aes)' crypto-gcm crypto-aes crypto-ctr crypto-ghash
	'crypto-ccm(aes)' crypto-ccm 'crypto-rfc7539(chacha20,poly1305)' crypto-rfc7539
	crypto-chacha20 crypto-poly1305)

log() { echo "ktls-vm: $*"; }
die() { echo "ktls-vm: $*" >&2; exit 1; }

t0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }

# Host tools, installed when missing.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
command -v modprobe >/dev/null && command -v depmod >/dev/null || need+=(kmod)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
command -v dpkg-deb >/dev/null || need+=(dpkg)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin:/sbin # depmod and modprobe

# A private apt configuration: the kernels come from suites the machine's own
# sources need not list, and nothing of the machine's apt state is touched.
mkdir -p "$APT/sources" "$APT/lists/partial" "$APT/cache/archives/partial" "$DIR/kernels"
# Each SUITE brings SUITE-updates and SUITE-security along (not for
# SUITE-backports); only the Packages indexes are fetched. The default
# kernels' suites stay listed, so that KTLS_KERNELS=bookworm does not make
# the next default run fetch the lists again.
suites="" security=""
for suite in $(for spec in bookworm trixie-backports $KERNELS; do s=${spec%%:*}; echo "${s%\?}"; done | sort -u); do
	case $suite in
	*-backports) suites+=" $suite" ;;
	*) suites+=" $suite $suite-updates" security+=" $suite-security" ;;
	esac
done
{
	printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites:%s\nComponents: main\n' "$suites"
	printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\nTargets: Packages\n'
	if [ -n "$security" ]; then
		printf '\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites:%s\nComponents: main\n' "$security"
		printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\nTargets: Packages\n'
	fi
} >"$APT/sources/ktls.sources.new"
# A new list of suites needs new lists.
if ! cmp -s "$APT/sources/ktls.sources.new" "$APT/sources/ktls.sources"; then
	rm -f "$APT/lists/"*Packages* "$APT/lists/"*Release*
fi
mv "$APT/sources/ktls.sources.new" "$APT/sources/ktls.sources"
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$APT/sources"
	-o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o Dir::State::status=/dev/null
	-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
	-o APT::Sandbox::User=root)
if [ -z "$(find "$APT/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 -print -quit)" ]; then
	t=$(date +%s.%N)
	apt-get "${apt_opts[@]}" update -qq || log "apt-get update reported errors; using what it fetched"
	log "apt lists updated in $(since "$t")"
fi

# The test binaries and /init, all static.
t=$(date +%s.%N)
CGO_ENABLED=0 go test -c -o "$DIR/tlsterm.test" ./tlsterm
CGO_ENABLED=0 go test -c -o "$DIR/l4.test" ./l4
CGO_ENABLED=0 go build -o "$DIR/vminit" ./tlsterm/vminit
log "built tlsterm.test, l4.test and vminit in $(since "$t")"

# pick_version PKG SUITE prints the highest version of PKG in SUITE,
# SUITE-updates or SUITE-security.
pick_version() {
	local best="" v s
	while read -r v s; do
		case $s in "$2" | "$2-updates" | "$2-security") ;; *) continue ;; esac
		if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
	done < <(apt-cache "${apt_opts[@]}" madison "$1" 2>/dev/null |
		awk -F'|' '{ gsub(/ /, "", $2); split($3, a, " "); split(a[2], s, "/"); print $2, s[1] }')
	echo "$best"
}

# deps PKG VERSION prints the package names PKG=VERSION depends on.
deps() {
	apt-cache "${apt_opts[@]}" show "$1=$2" | sed -n 's/^Depends: //p' | head -1 |
		tr ',|' '\n' | sed 's/^ *//; s/ .*//'
}

# fetch_kernel SPEC resolves SPEC, downloads and unpacks it once, and prints
# on fd 3 the directory holding its vmlinuz, kver, mods/ and modules.list.
# Call it in a subshell with set -e (see below): a function called as a
# condition runs without errexit.
fetch_kernel() {
	local spec=$1 suite pkg ver image debs=() d p KDIR KDESC
	suite=${spec%%:*}
	pkg=linux-image-cloud-amd64
	[ "$spec" = "$suite" ] || pkg=${spec#*:}
	ver=$(pick_version "$pkg" "$suite")
	[ -n "$ver" ] || { log "$spec: no $pkg in $suite"; return 1; }
	# A meta-package depends on one linux-image-KVER-FLAVOUR of its version.
	image=$pkg
	for d in $(deps "$pkg" "$ver"); do
		case $d in linux-image-*) [ "$d" = "$pkg" ] || image=$d ;; esac
	done
	KDIR=$DIR/kernels/${image}_${ver//:/%3a}
	KDESC="$image $ver ($suite)"
	local aliases="${ALIASES[*]}"
	if [ -f "$KDIR/done" ] && [ "$(cat "$KDIR/aliases")" = "$aliases" ]; then
		touch "$KDIR/done" # see the pruning at the end
		echo "$KDIR" >&3
		return 0
	fi
	# From 7.x the image is split into linux-binary-* and linux-modules-*.
	for d in $(deps "$image" "$ver"); do
		case $d in linux-binary-* | linux-modules-*) debs+=("$d") ;; esac
	done
	[ ${#debs[@]} -gt 0 ] || debs=("$image")
	local tmp=$DIR/tmp
	rm -rf "$KDIR" "$tmp"
	mkdir -p "$tmp/root" "$KDIR/mods"
	# Only vmlinuz and the modules needed are kept, not the .debs.
	for p in "${debs[@]}"; do
		t=$(date +%s.%N)
		(cd "$tmp" && apt-get "${apt_opts[@]}" download -qq "$p=$ver") || { log "$spec: cannot download $p=$ver"; return 1; }
		local deb
		deb=$(ls "$tmp"/*.deb)
		log "downloaded $(basename "$deb") ($(du -h "$deb" | cut -f1)) in $(since "$t")"
		dpkg-deb -x "$deb" "$tmp/root"
		rm "$deb"
	done
	local base kver f
	for base in "$tmp/root" "$tmp/root/usr"; do
		kver=$(find "$base/lib/modules" -mindepth 1 -maxdepth 1 -printf "%f\n" 2>/dev/null | head -1) && [ -n "$kver" ] && break
	done
	[ -n "$kver" ] || { log "$spec: no lib/modules in ${debs[*]}"; return 1; }
	local vmlinuz
	for vmlinuz in "$tmp/root/boot/vmlinuz-$kver" "$base/lib/modules/$kver/vmlinuz" ""; do
		[ -f "$vmlinuz" ] && break
	done
	[ -n "$vmlinuz" ] || { log "$spec: no vmlinuz in ${debs[*]}"; return 1; }
	cp "$vmlinuz" "$KDIR/vmlinuz"
	echo "$kver" >"$KDIR/kver"
	# The .debs leave modules.dep to the postinst; from 7.x modules.order
	# and modules.builtin are in linux-base-*, which is not needed here:
	# without them a built-in alias counts as absent, and vminit checks
	# the ULP itself.
	for f in modules.order modules.builtin modules.builtin.modinfo; do
		[ -e "$base/lib/modules/$kver/$f" ] || : >"$base/lib/modules/$kver/$f"
	done
	depmod -b "$base" "$kver"
	# --show-depends prints "insmod PATH" for each module, dependencies
	# first, and "builtin NAME" for what the kernel has built in.
	local a line n=0 seen=" " name
	: >"$KDIR/modules.list"
	for a in "${ALIASES[@]}"; do
		if ! out=$(modprobe -a -d "$base" -S "$kver" --show-depends "$a" 2>&1); then
			[ "$a" != tls ] || log "$spec: no tls module (built in?): $out"
			continue
		fi
		while read -r line; do
			case $line in insmod\ *) ;; *) continue ;; esac
			p=${line#insmod }
			p=${p%% *}
			name=$(basename "$p")
			name=${name%%.ko*}
			case $seen in *" $name "*) continue ;; esac
			seen+="$name "
			n=$((n + 1))
			local out_ko
			out_ko=$(printf '%02d-%s.ko' "$n" "$name")
			case $p in
			*.ko.xz) xz -dc "$p" >"$KDIR/mods/$out_ko" ;;
			*.ko.zst) zstd -qdc "$p" >"$KDIR/mods/$out_ko" ;;
			*.ko.gz) gzip -dc "$p" >"$KDIR/mods/$out_ko" ;;
			*) cp "$p" "$KDIR/mods/$out_ko" ;;
			esac
			echo "/modules/$out_ko" >>"$KDIR/modules.list"
		done <<<"$out"
	done
	echo "$aliases" >"$KDIR/aliases"
	echo "$KDESC" >"$KDIR/desc"
	rm -rf "$tmp"
	touch "$KDIR/done"
	echo "$KDIR" >&3
}

# initramfs KDIR OUT writes the initramfs for the kernel in KDIR.
initramfs() {
	local stage=$DIR/stage f
	rm -rf "$stage"
	mkdir -p "$stage/modules" "$stage/proc" "$stage/sys" "$stage/dev" "$stage/tmp"
	cp "$DIR/vminit" "$stage/init"
	cp "$DIR/tlsterm.test" "$DIR/l4.test" "$stage/"
	cp "$1/modules.list" "$stage/modules.list"
	cp "$1"/mods/*.ko "$stage/modules/" 2>/dev/null || true
	local ossl
	ossl=$(command -v openssl || true)
	if [ "${KTLS_OPENSSL:-1}" = 1 ] && [ -n "$ossl" ]; then
		# openssl, its libraries and loader, at the host's paths.
		for f in "$ossl" $(ldd "$ossl" | grep -o '/[^ ]*'); do
			mkdir -p "$stage$(dirname "$f")"
			cp -L "$f" "$stage$f"
		done
		mkdir -p "$stage/usr/lib/ssl"
		[ ! -f /etc/ssl/openssl.cnf ] || cp /etc/ssl/openssl.cnf "$stage/usr/lib/ssl/openssl.cnf"
	fi
	(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) >"$2"
	rm -rf "$stage"
}

qpid=""
cleanup() { if [ -n "$qpid" ]; then kill "$qpid" 2>/dev/null || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$DIR/logs"
passed=0 failed=0 summary=()
for spec in $KERNELS; do
	optional=0
	case $spec in *\?) optional=1 spec=${spec%\?} ;; esac
	t=$(date +%s.%N)
	set +e
	KDIR=$( (set -e; fetch_kernel "$spec") 3>&1 1>&2)
	rc=$?
	set -e
	if [ $rc != 0 ] || [ ! -f "$KDIR/done" ]; then
		if [ $optional = 1 ]; then
			log "$spec: skipped (optional, not available)"
			summary+=("$spec: skipped, not available")
			continue
		fi
		failed=$((failed + 1))
		summary+=("$spec: FAIL, kernel not available")
		continue
	fi
	kver=$(cat "$KDIR/kver")
	cpio=$DIR/initramfs-$kver.cpio
	initramfs "$KDIR" "$cpio"
	log "$kver: $(cat "$KDIR/desc"), $(wc -l <"$KDIR/modules.list") modules, initramfs $(du -h "$cpio" | cut -f1), ready in $(since "$t")"

	append="console=ttyS0 panic=-1 quiet loglevel=3 KTLS_TIMEOUT=$TIMEOUT"
	[ -z "${KTLS_RUN:-}" ] || append+=" KTLS_RUN=\"$KTLS_RUN\""
	logf=$DIR/logs/$kver.log
	for attempt in 1 2 3; do
		t=$(date +%s.%N)
		timeout -k 5 $((TIMEOUT + 30)) qemu-system-x86_64 -accel tcg -cpu max -m "$MEM" -smp "$SMP" \
			-nographic -no-reboot -nodefaults -serial stdio \
			-kernel "$KDIR/vmlinuz" -initrd "$cpio" -append "$append" </dev/null >"$logf" 2>&1 &
		qpid=$!
		rc=0
		wait "$qpid" || rc=$?
		qpid=""
		wall=$(since "$t")
		# A guest that died before /init ran says nothing about kTLS:
		# boot it again, up to three times in all. 7.3 under TCG now and
		# then hits an int3 oops in a kernel thread at boot (code being
		# patched while another vCPU runs it), once twice running in one
		# CI run.
		if grep -q 'VMINIT kernel=' "$logf" || [ $attempt = 3 ]; then break; fi
		log "$kver: the guest died before /init ($(grep -m1 -oE 'Oops[^\r]*|Kernel panic[^\r]*' "$logf" || echo 'no output')); booting it again"
	done
	# SeaBIOS and the kernel write escape sequences and CRs.
	sed -i 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1b[a-zA-Z]//g; s/\r$//' "$logf"
	rm -f "$cpio"

	if [ "$VERBOSE" = 1 ]; then
		cat "$logf"
	else
		grep -E 'VMINIT |VMRESULT |^ *--- |^(ok|FAIL|PASS)( |$)|ProbeKernelTLS' "$logf" || true
	fi
	# The BIOS may leave a partial line before vminit's first one. vminit
	# prints VMRESULT last, after anything a test printed.
	boot=$(sed -n 's/.*VMINIT kernel=.* uptime=\([^ ]*\).*/\1/p' "$logf")
	mods=$(sed -n 's/.*VMINIT modules=\([0-9]*\) load=\([^ ]*\).*/\1 in \2/p' "$logf")
	result=$(grep '^VMRESULT ' "$logf" | tail -1 || true)
	tests=$(echo "$result" | sed -n 's/.*tests=\([^ ]*\).*/\1/p')
	line="$kver: boot ${boot:-?}, modules ${mods:-?}, tests ${tests:-?}, qemu ${wall} (exit $rc)"
	# A guest that passed but did not power off (qemu stopped by timeout)
	# fails too: every run would take KTLS_TIMEOUT.
	if [ "$(echo "$result" | cut -d' ' -f2)" = pass ] && [ "$rc" = 0 ]; then
		passed=$((passed + 1))
		summary+=("$line: pass")
	else
		failed=$((failed + 1))
		summary+=("$line: FAIL ${result:-no VMRESULT line}")
		[ "$VERBOSE" = 1 ] || { echo "--- guest console ($logf):"; cat "$logf"; }
	fi
	log "${summary[-1]}"
done

# Kernels no run has used for two weeks (a newer ABI replaced them).
find "$DIR/kernels" -mindepth 2 -maxdepth 2 -name 'done' -mtime +14 -printf '%h\n' | xargs -r rm -rf

echo
for s in "${summary[@]}"; do log "$s"; done
log "total $(since "$t0"); cache $(du -sh "$DIR" | cut -f1) in $DIR"
echo "ktls-vm: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
