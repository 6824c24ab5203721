#!/usr/bin/env bash
# Prepares the fleet tests on a fresh Debian machine: a running Docker engine, docker-compose, the base image made
# locally (no registry is needed), the worker built on the host and the image built from the repository's
# Dockerfile with the CI build arguments (docs/deployment.md), and the store's image from deploy/store on the same
# base. Idempotent; the base system tarball is cached outside the repository. Prints FLEET_IMAGE=<image> and
# STORE_IMAGE=<image> for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${UNIFIED_WORKER_CACHE:-$HOME/.cache/unified-worker}"
BASE_IMAGE=localbase/debian:bookworm
IMAGE="${FLEET_IMAGE:-unified-worker:ci}"
STORE_IMAGE="${STORE_IMAGE:-unified-worker-store:ci}"
mkdir -p "$CACHE"

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v docker-compose >/dev/null; then
  apt-get update -qq >&2
  apt-get install -y -qq docker.io debootstrap docker-compose >&2
fi

if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd" >&2
  nohup dockerd >"$CACHE/dockerd.log" 2>&1 &
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start, see $CACHE/dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  tarball="$CACHE/debian-bookworm-minbase.tar"
  if [ ! -f "$tarball" ]; then
    rootfs=$(mktemp -d)
    echo "making the base system with debootstrap" >&2
    debootstrap --variant=minbase bookworm "$rootfs" >&2
    tar -C "$rootfs" -c . >"$tarball.part"
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  docker import - "$BASE_IMAGE" <"$tarball" >&2
fi

cargo build --release --locked -p unified-worker >&2

# Only BuildKit skips the Dockerfile's unused stages (the Rust and Node images, which cannot be pulled here). A CLI
# with buildx has it; without buildx, docker.io's own CLI still has it built in.
docker_cli=docker
if ! docker buildx version >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then
  docker_cli=/usr/bin/docker
fi
DOCKER_BUILDKIT=1 "$docker_cli" build \
  --build-arg RUNTIME_IMAGE="$BASE_IMAGE" \
  --build-arg WORKER_BINARY=host \
  --build-arg PROVIDER_CLIS=none \
  -t "$IMAGE" . >&2
DOCKER_BUILDKIT=1 "$docker_cli" build --build-arg RUNTIME_IMAGE="$BASE_IMAGE" -t "$STORE_IMAGE" deploy/store >&2
echo "FLEET_IMAGE=$IMAGE"
echo "STORE_IMAGE=$STORE_IMAGE"
