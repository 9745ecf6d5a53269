# The tailship container image: a builder stage that compiles one statically linked binary
# from source, and a `FROM scratch` runtime stage that holds only that binary and a default
# config. Build from source (needs access to a registry with rust:1-bookworm):
#   docker build --target runtime -t tailship:dev .
# Without registry access (our CI machines), compile on the host and use the same runtime
# stage from docker/Dockerfile.prebuilt instead:  scripts/build-image.sh
# Keep the runtime stage here and docker/Dockerfile.prebuilt identical apart from the binary's
# source (scripts/validate-k8s.sh checks this).

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
# glibc, linked statically: no libc, NSS or OpenSSL needed at run time (names are resolved
# by src/ship/resolve.rs). The explicit --target keeps build scripts and proc-macros dynamic.
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --target x86_64-unknown-linux-gnu --bin tailship \
 && cp target/x86_64-unknown-linux-gnu/release/tailship /tailship

FROM scratch AS runtime
COPY --from=builder /tailship /tailship
COPY docker/tailship.toml /etc/tailship/tailship.toml
# An empty data_dir owned by the agent's user, so a plain `docker run` (or a named volume
# mounted here, which takes this ownership) works; in Kubernetes an emptyDir is mounted over it.
COPY --chown=65532:65532 docker/data_dir /var/lib/tailship
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/tailship"]
CMD ["--config", "/etc/tailship/tailship.toml"]
