# sluice: a layer-4 TLS terminator.
#   make run    build and run sluice on configs/sluice.toml with the demo backend
#   make test   vet, lint and the whole test suite with -race

GO          ?= go
BIN         := bin/sluice
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 30s
DURATION    ?= 2m

.PHONY: all build run test vet lint fmt unit fuzz test-ktls interop testssl soak attack attack-smoke bench bench-smoke bench-k6 pgo clean

all: build

# go build takes cmd/sluice/default.pgo by itself (profile-guided
# optimisation); make pgo regenerates it.
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sluice

# The CPU profile sluice is built with, from the bench's loads (about a
# minute; needs wrk): see bench/pgo.sh.
pgo:
	bash bench/pgo.sh

# Runs the demo backend in the background and sluice in the foreground;
# Ctrl-C stops both. The addresses are configs/sluice.toml's: the demo
# backend listens where that file's upstream sends (servers, 127.0.0.1:8081)
# and the messages name its listener (127.0.0.1:8443). They are not make
# variables: DEMO_ADDR= moved the backend away from the servers sluice
# dials. Other configurations run as in the README's Quickstart;
# .ci/quickstart.sh checks these addresses against the file.
run: build
	@out=$$($(BIN) -check -config configs/sluice.toml 2>&1) || { echo "$$out"; exit 1; }
	@echo ""
	@echo "  sluice is starting on https://127.0.0.1:8443/ (self-signed certificate)"
	@echo "  try:     curl -k https://127.0.0.1:8443/"
	@echo "  browser: open https://127.0.0.1:8443/ and accept the certificate warning;"
	@echo "           the page opens a wss:// echo through sluice"
	@echo "  metrics: curl http://127.0.0.1:9090/metrics   (also /healthz and /readyz)"
	@echo "  stop:    Ctrl-C"
	@echo ""
	@$(BIN) demo-backend -listen 127.0.0.1:8081 & demo=$$!; \
	trap 'kill $$demo 2>/dev/null; wait $$demo 2>/dev/null' EXIT INT TERM; \
	$(BIN) -config configs/sluice.toml

test: vet lint unit

vet:
	$(GO) vet ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

unit:
	$(GO) test -race -count=1 -timeout 10m ./...

# Fuzzing runs of every parser fuzz target, FUZZTIME each (make fuzz
# FUZZTIME=5m). Their seeds (testdata/fuzz and the f.Add calls) run in
# make test. FuzzLoadConfig and FuzzPeekClientHello minimize each new input
# for 1 s, not the default 60 s: with inputs of 1 to 2 KiB that would take
# up most of a short run.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReadProxyHeader$$' -fuzztime $(FUZZTIME) ./l4
	$(GO) test -run '^$$' -fuzz '^FuzzReadRequestHead$$' -fuzztime $(FUZZTIME) ./l4
	$(GO) test -run '^$$' -fuzz '^FuzzPeekClientHello$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./tlsterm
	$(GO) test -run '^$$' -fuzz '^FuzzScanKeyLines$$' -fuzztime $(FUZZTIME) ./cmd/sluice
	$(GO) test -run '^$$' -fuzz '^FuzzCheckNesting$$' -fuzztime $(FUZZTIME) ./cmd/sluice
	$(GO) test -run '^$$' -fuzz '^FuzzLoadConfig$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./cmd/sluice

# tlsterm's kernel-TLS tests inside real Debian kernels under qemu (TCG;
# this machine's kernel has no kTLS): bookworm's 6.1 cloud kernel and the
# newest trixie-backports one (6.14 and later rekey). Installs qemu, cpio
# and kmod with apt-get when missing; kernels are cached in bin/ktls-vm/
# (about 15 s warm, a minute cold). KTLS_KERNELS, KTLS_RUN and KTLS_TIMEOUT
# choose kernels, tests and the bound (see .ci/ktls-vm.sh).
test-ktls:
	bash .ci/ktls-vm.sh

# Real peers: nginx and HAProxy reading sluice's PROXY headers, HAProxy
# sending them to sluice, a WebSocket upgrade; installs what is missing with
# apt-get.
interop:
	bash .ci/interop.sh

# A TLS scan: Debian's testssl.sh against sluice on its default TLS settings
# and with min_version = "1.3", on loopback, with a certificate from a test
# CA the scan trusts; fails on any finding MEDIUM or worse (about 4 minutes;
# installs testssl.sh with apt-get if missing). JSON and text output go to
# bin/testssl/.
testssl: build
	bash .ci/testssl.sh

# The verified soak (bench/soak): 300 concurrent streams through a
# terminating, a plain, a passthrough and a WebSocket listener for
# DURATION (make soak DURATION=1h), random sizes and half-closes, SHA-256
# at both ends, while backends are SIGKILLed and restarted and sluice is
# reloaded with SIGHUP (once with a file it must refuse) and upgraded with
# SIGUSR2 every 7s (its connections move to the new process). Fails on a
# failure no backend kill explains, a byte lost, corrupted or cut short
# under a clean end, an upgrade that fails or leaves more than one sluice,
# descriptors or goroutines not back to their baseline, or sluice not
# exiting 0. SOAK_ARGS passes more flags (-streams, -seed, -keep, -json
# FILE, -upgrade-every 0 to leave upgrades out).
soak: build
	$(GO) build -o bin/soak ./bench/soak
	bin/soak -sluice $(BIN) -duration $(DURATION) $(SOAK_ARGS)

# The fleet test (bench/fleet): three sluice processes on 127.0.0.11-13
# behind a real HAProxy on 127.0.0.10 (mode tcp, send-proxy-v2, round
# robin, /readyz health checks, retries with redispatch), backends that
# read sluice's PROXY v2 header, a client on 127.0.0.99. Checks that the
# backends see the client's own address through both hops; that a session
# resumes on another instance with one session_ticket_keys file (and not
# with a file each, the control); that reloading and then upgrading each
# instance in turn under load fails no connection and no echo; that a
# SIGKILLed instance loses only its own connections while HAProxy moves
# new ones to the others; and that nothing is left running. About 40 s;
# installs haproxy with apt-get if missing. FLEET_ARGS passes more flags
# (-duration, -kill-duration, -rate, -held, -keep, -break WHAT to see a
# check fail).
.PHONY: fleet
fleet: build
	@export PATH="$$PATH:/usr/sbin"; command -v haproxy >/dev/null || { \
		echo "fleet: installing haproxy"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null; }
	$(GO) build -o bin/fleet ./bench/fleet
	PATH="$$PATH:/usr/sbin" bin/fleet -sluice $(BIN) $(FLEET_ARGS)

# sluice under a handshake flood, with and without max_handshakes and
# rate_per_ip, and under 10,000 silent connections, beside a well-behaved
# client's latency (about 4 minutes; sluice on one CPU, the load on the
# other); writes bench/results/attack.md. attack-smoke does every phase in
# a few seconds, with 1,000 silent connections, into a scratch file.
attack:
	bash bench/attack.sh $(ATTACK_ARGS)

attack-smoke:
	bash bench/attack.sh -quick -out $$(mktemp -d)/attack.md

# The side-by-side benchmark against nginx, HAProxy and hitch (about 40
# minutes); writes bench/results/latest.md and latest.svg.
bench:
	bash bench/run.sh $(BENCH_ARGS)

# A quick pass over every scenario (1 run, 2 s, 300 connections) that checks
# the suite itself works; its results go to a scratch directory.
bench-smoke:
	bash bench/run.sh -reps 1 -duration 2s -ws-duration 3s -ws-quiet 1s -idle-wait 1s -conns 300 -out $$(mktemp -d)

# The k6 versions of the workloads, when k6 is installed.
bench-k6:
	bash bench/k6/run.sh

# The Kubernetes manifests (deploy/kubernetes, a kustomize base), checked
# offline in a Go module of their own: every object decoded strictly into
# its k8s.io/api type (a misspelt field fails), the objects checked against
# each other and sluice.toml, Pod Security "restricted", and sluice -check
# on sluice.toml as a pod sees it. The first run downloads the module's
# dependencies (Kubernetes and kustomize libraries).
# docker: the image of the Dockerfile, tagged with VERSION.
.PHONY: deploy-check docker
deploy-check: build
	cd deploy/kubernetes && $(GO) vet ./... && SLUICE_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 ./...

docker:
	docker build --build-arg VERSION=$(VERSION) -t sluice:$(VERSION) .

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
