# syntax=docker/dockerfile:1
#
# marketcast's container image: a static binary on scratch, running as the
# unprivileged user 65532, with CA certificates and Go's time zone database
# (TZ=Asia/Shanghai works). About 25 MB.
#
#   docker build -t marketcast \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse HEAD) --build-arg DATE=$(git log -1 --format=%cI) .
#   docker run -p 8000:8000 -e MARKETCAST_JWT_SECRET=... -e MARKETCAST_FEED=none marketcast
#
# Ports: 8000 WebSocket /ws, publish API, /healthz, /readyz; 9090 the
# operations listener (/metrics, /ws/stats; MARKETCAST_OPS_TOKEN guards it).
# Volumes: /var/lib/marketcast, private history kept across restarts (set
# MARKETCAST_DATA_DIR=/var/lib/marketcast: an embedded NATS store);
# /etc/marketcast, a config file (-config /etc/marketcast/marketcast.yaml) and
# TLS files. Every configuration key is an environment variable:
# MARKETCAST_ + its path (docs/OPERATIONS.md). deploy/compose.yaml runs a
# cluster of three nodes from it.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY third_party/ third_party/
RUN go mod download
COPY . .
ARG VERSION=devel
ARG COMMIT=unknown
ARG DATE=unknown
# As `make release` builds: static, reproducible, stamped.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/marketcast/marketcast/internal/buildinfo.version=${VERSION} -X github.com/marketcast/marketcast/internal/buildinfo.commit=${COMMIT} -X github.com/marketcast/marketcast/internal/buildinfo.date=${DATE}" \
      -o /out/marketcast ./cmd/marketcast \
 && sh deploy/rootfs.sh /out/marketcast /rootfs

FROM scratch
COPY --from=build /rootfs /
USER 65532:65532
# Production by default: a real secret (or keys) and a named feed are needed
# to start; MARKETCAST_DEV_MODE=true for a try-out (then /dev/token serves
# anyone who reaches the port).
ENV MARKETCAST_LISTEN=:8000 \
    MARKETCAST_OPS_LISTEN=:9090 \
    MARKETCAST_DEV_MODE=false \
    MARKETCAST_LOG_FORMAT=json \
    MARKETCAST_SHUTDOWN_UNREADY_DELAY=5s
EXPOSE 8000 9090
VOLUME ["/var/lib/marketcast"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/marketcast", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/marketcast"]
CMD ["serve"]
