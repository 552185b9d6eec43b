# Builds both binaries (gateway, notifier) into one small runtime image.
#   docker build -t event-gateway .
#   docker run event-gateway gateway --help
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake python3 libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gateway -p notifier --bin gateway --bin notifier \
 && cp target/release/gateway target/release/notifier /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/event-gateway --create-home app \
 && mkdir -p /var/lib/event-gateway/state \
 && chown app /var/lib/event-gateway/state
COPY --from=build /usr/local/bin/gateway /usr/local/bin/notifier /usr/local/bin/
COPY notifier/templates /usr/share/event-gateway/templates
USER app
WORKDIR /var/lib/event-gateway
# librdkafka's fetch buffers (up to a record batch) go back to the system
# once freed: glibc otherwise keeps them in its heaps (see README, Limits).
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072
EXPOSE 50051 9464 9465
CMD ["gateway"]
