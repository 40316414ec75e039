# ferry: a multi-stage build. The builder compiles RocksDB from source (clang), the
# runtime image is Debian slim with the one binary, running as an unprivileged user.
#
#   docker build -t ferry .
#   docker run -p 5000:5000 -v ferry-data:/var/lib/ferry ferry
#   docker run -v ./my.toml:/etc/ferry/ferry.toml:ro ... ferry          # your config
#   docker run --entrypoint ferry ferry redirect --config /etc/ferry/redirect.toml

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY storage storage
COPY src src
COPY benches benches
COPY config config
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ferry \
 && cp target/release/ferry /usr/local/bin/ferry \
 && strip /usr/local/bin/ferry

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/ferry --shell /usr/sbin/nologin ferry \
 && mkdir -p /var/lib/ferry /etc/ferry \
 && chown ferry:ferry /var/lib/ferry
COPY --from=build /usr/local/bin/ferry /usr/local/bin/ferry
COPY config/container.toml /etc/ferry/ferry.toml
USER 10001:10001
VOLUME ["/etc/ferry", "/var/lib/ferry"]
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=6s --start-period=30s --retries=3 \
  CMD ["ferry", "probe", "http://127.0.0.1:5000/readyz"]
ENTRYPOINT ["ferry", "serve"]
CMD ["--config", "/etc/ferry/ferry.toml"]
