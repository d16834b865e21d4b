# syntax=docker/dockerfile:1
#
# sluice in a container: the static binary on a distroless base (no shell,
# no package manager: CA certificates, tzdata and /etc/passwd), run as UID
# 65532. `make docker` builds it with the version from git:
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t sluice .
#   docker buildx build --platform linux/amd64,linux/arm64 ...   (cross-compiled, no emulation)
#
# The image listens where its configuration says; the default command reads
# /etc/sluice/sluice.toml, which a volume provides (deploy/kubernetes mounts
# a ConfigMap there). To bind 443 as UID 65532 the container needs the
# sysctl net.ipv4.ip_unprivileged_port_start <= 443 in its network
# namespace: Docker sets it to 0 by default, and so does containerd 2.0's
# CRI plugin for Kubernetes pods; deploy/kubernetes/deployment.yaml sets it
# in the pod for other runtimes. The binary carries no file capabilities:
# it needs none.
#
# For production, pin both base images by digest (FROM image@sha256:...).

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first, in their own layer, so that a source change does not
# download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The Go of the image, never a downloaded one (go.mod asks for 1.26.8 or
# later). CGO_ENABLED=0: a static binary, which the distroless static base
# needs (it has no libc).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOTOOLCHAIN=local \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/sluice ./cmd/sluice

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /sluice
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# The TLS listener and the admin listener (/metrics, /healthz, /readyz) of
# deploy/kubernetes/sluice.toml.
EXPOSE 443 9090
ENTRYPOINT ["/sluice"]
CMD ["-config", "/etc/sluice/sluice.toml"]
