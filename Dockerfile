# Static, non-root images of the keyward binary (operator and CLI) and of the example workload.
#   docker build -t ghcr.io/keyward/keyward:0.1.0 .
#   docker build --target license-watcher -t ghcr.io/keyward/license-watcher:0.1.0 .
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
COPY benches benches
COPY examples examples
RUN cargo build --release --locked --bin keyward --example license-watcher \
 && strip target/release/keyward target/release/examples/license-watcher

FROM gcr.io/distroless/static-debian12:nonroot AS license-watcher
COPY --from=build /src/target/release/examples/license-watcher /usr/local/bin/license-watcher
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/license-watcher"]

FROM gcr.io/distroless/static-debian12:nonroot AS keyward
COPY --from=build /src/target/release/keyward /usr/local/bin/keyward
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/keyward"]
CMD ["controller", "--trusted-keys=/etc/keyward/trusted-keys"]
