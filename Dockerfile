# syntax=docker/dockerfile:1
# bandsync in a container: built in a Rust image, run from a slim Debian as a non-root user.
#
#   docker build -t bandsync .
#   docker run -p 3001:3001 -e REDIS_URL=redis://redis:6379 bandsync
#
# Not built in this repository's test suite (it has no container engine); tests/operations.rs
# checks its shape (stages, user, health check, exposed port).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The release binary only: not the clients, benches or the fuzz crate.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p bandsync --bin bandsync \
    && install -D -m 0755 target/release/bandsync /out/bandsync

FROM debian:bookworm-slim
# curl: the health check's client.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/bandsync --create-home bandsync
COPY --from=build /out/bandsync /usr/local/bin/bandsync
USER 10001:10001
WORKDIR /var/lib/bandsync
ENV HOST=0.0.0.0 \
    PORT=3001 \
    LOG_FORMAT=json \
    ASSET_STORAGE_PATH=/var/lib/bandsync/assets \
    STREAM_STATE_PATH=/var/lib/bandsync/streams
VOLUME ["/var/lib/bandsync"]
EXPOSE 3001
# SIGTERM: graceful shutdown within SHUTDOWN_TIMEOUT_MS (docker stop waits 10 s).
STOPSIGNAL SIGTERM
# /health answers 503 once the engine thread stopped; curl -f turns that into a failure.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT}/health" -o /dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/bandsync"]
