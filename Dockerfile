# syntax=docker/dockerfile:1
# Build: docker build -t hookgate .
# Run:   docker run -p 8080:8080 -p 9090:9090 -v hookgate-store:/var/lib/hookgate \
#          -v "$PWD/gateway.toml:/etc/hookgate/gateway.toml:ro" hookgate
# The config must listen on 0.0.0.0 (and set [admin] token for the admin port off loopback) and keep
# [store] path under /var/lib/hookgate.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/hookgate /hookgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/hookgate hookgate \
    && install -d -o hookgate -g hookgate -m 0700 /var/lib/hookgate
COPY --from=build /hookgate /usr/local/bin/hookgate
USER 10001:10001
VOLUME ["/var/lib/hookgate"]
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/hookgate"]
CMD ["serve", "--config", "/etc/hookgate/gateway.toml"]
