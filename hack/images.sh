#!/usr/bin/env bash
# Builds the operator image, the example workload image and the node's pause image as tars,
# without a container engine or a registry (the Dockerfile builds the same images with one).
#
#   hack/images.sh [OUT]     default OUT: target/images
#
#   KEYWARD_IMAGE_PROFILE    cargo profile of the static binaries (default: release; the tests use
#                            `quick-release`, which compiles in a fraction of the time)
#   IMAGE / WATCHER_IMAGE    references the images are tagged with (the chart's defaults)
#
# The binaries are static (glibc with crt-static), the images hold nothing but the binary and a
# distroless-style /etc/passwd, /etc/group, /tmp and /home/nonroot, and run as 65532.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/target/images}
PROFILE=${KEYWARD_IMAGE_PROFILE:-release}
TARGET=$(rustc -vV | sed -n 's/^host: //p')
IMAGE=${IMAGE:-ghcr.io/keyward/keyward:$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)}
WATCHER_IMAGE=${WATCHER_IMAGE:-ghcr.io/keyward/license-watcher:${IMAGE##*:}}
CARGO=${CARGO:-cargo}

log() { printf 'images: %s\n' "$*" >&2; }

cd "$ROOT"
mkdir -p "$OUT"
log "building static binaries ($PROFILE, $TARGET)"
# With an explicit --target, RUSTFLAGS reach only the target's crates, not build scripts or
# proc macros, and the output lands apart from the ordinary builds.
RUSTFLAGS="-C target-feature=+crt-static" "$CARGO" build --locked --profile "$PROFILE" \
  --target "$TARGET" --bin keyward --example license-watcher >&2
"$CARGO" build --locked --quiet --example image-tar >&2

dir=$ROOT/target/$TARGET/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
tool=$ROOT/target/debug/examples/image-tar
# Stripped as the Dockerfile strips them.
stripped=$(mktemp -d)
trap 'rm -rf "$stripped"' EXIT
strip -o "$stripped/keyward" "$dir/keyward"
strip -o "$stripped/license-watcher" "$dir/examples/license-watcher"
"$tool" --image keyward --binary "$stripped/keyward" --tag "$IMAGE" --out "$OUT/keyward.tar"
"$tool" --image license-watcher --binary "$stripped/license-watcher" --tag "$WATCHER_IMAGE" \
  --out "$OUT/license-watcher.tar"

pause=$("$ROOT/hack/envtest.sh" node-tools)/pause
"$tool" --image pause --binary "$pause" --tag localhost/keyward/pause:3.6 --out "$OUT/pause.tar"
printf '%s\n' "$IMAGE" >"$OUT/keyward.ref"
printf '%s\n' "$WATCHER_IMAGE" >"$OUT/license-watcher.ref"
log "wrote $OUT/{keyward,license-watcher,pause}.tar"
