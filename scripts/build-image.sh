#!/usr/bin/env bash
# Builds the tailship container image on a machine without registry access: compiles the
# statically linked binary on the host, then builds the `FROM scratch` runtime image from
# docker/Dockerfile.prebuilt (the same runtime stage as ./Dockerfile).
#   scripts/build-image.sh [TAG]          # default tag: tailship:dev
#   scripts/build-image.sh --binary-only  # just the static binary (CI builds it ahead of the tests)
# Environment: TAILSHIP_SKIP_CARGO=1 uses the binary already in target/static as it is.
# tests/it/pod.rs builds with exactly these cargo settings, so either reuses the other's build.
set -euo pipefail
cd "$(dirname "$0")/.."
binary_only=0
if [[ "${1:-}" == --binary-only ]]; then
    binary_only=1
    shift
fi
tag="${1:-tailship:dev}"
target=x86_64-unknown-linux-gnu
bin="target/static/$target/release/tailship"

if [[ "${TAILSHIP_SKIP_CARGO:-}" != 1 ]]; then
    # Started from `cargo test` (tests/it/pod.rs), this script inherits what cargo set for the
    # test: CARGO_MANIFEST_DIR, CARGO_PKG_NAME, … Build scripts that watch those (ring's does)
    # would then see them change and rebuild ring, rustls, reqwest and tailship on every run.
    for var in $(compgen -e); do
        case "$var" in
            CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_BIN_* | CARGO_CRATE_NAME | CARGO_PRIMARY_PACKAGE | \
                CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR | OUT_DIR) unset "$var" ;;
        esac
    done
    # +crt-static links glibc statically; the explicit --target keeps build scripts and
    # proc-macros dynamic; a separate target dir keeps the normal build cache intact.
    # OPENSSL_STATIC: the kafka sink's OpenSSL (librdkafka's TLS and SCRAM) from libssl-dev's
    # static libraries too.
    RUSTFLAGS="-C target-feature=+crt-static" \
    OPENSSL_STATIC=1 \
    CARGO_TARGET_DIR=target/static \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
        cargo build --release --locked --target "$target" --bin tailship
fi

# A dynamically linked binary would start nowhere in a scratch image: refuse it here.
if command -v file >/dev/null && ! file "$bin" | grep -q "statically linked\|static-pie linked"; then
    echo "build-image: $bin is not statically linked: $(file -b "$bin")" >&2
    exit 1
fi
"$bin" --version >/dev/null
if [[ $binary_only == 1 ]]; then
    echo "built $bin ($(stat -c %s "$bin") bytes)"
    exit 0
fi

docker build --quiet -f docker/Dockerfile.prebuilt -t "$tag" . >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "built $tag: $(awk -v b="$size" 'BEGIN { printf "%.1f MiB", b / 1048576 }') ($size bytes), binary $(stat -c %s "$bin") bytes"
