# factorypal in a small image: built in a Rust image, run from debian-slim as a non-root user.
#   docker build -t factorypal .
#   docker run --rm factorypal --help
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a change to src/ does not refetch them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo fetch --locked && rm -rf src
COPY src ./src
RUN cargo build --release --locked --bin factorypal

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin factorypal \
    && mkdir -p /app/database && chown factorypal /app/database
WORKDIR /app
COPY --from=build /src/target/release/factorypal /usr/local/bin/factorypal
COPY config ./config
COPY data_source ./data_source
USER factorypal
# serve-api's default port, and the status page's in compose.yaml.
EXPOSE 5000 8080
ENTRYPOINT ["factorypal"]
CMD ["--help"]
