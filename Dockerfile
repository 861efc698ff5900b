# Static, non-root image of the keyward binary (operator and CLI).
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
COPY benches benches
COPY examples examples
RUN cargo build --release --locked --bin keyward \
 && strip target/release/keyward

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/keyward /usr/local/bin/keyward
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/keyward"]
CMD ["controller", "--trusted-keys=/etc/keyward/trusted-keys"]
