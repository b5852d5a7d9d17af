#!/usr/bin/env bash
# Builds the `scale` image with no container registry:
#   1. `dotnet publish` of Scale.Host on this host, self-contained for linux-x64 (the .NET runtime included);
#   2. a Debian 12 base with the libraries it needs (libgomp1 for libtorch, libicu72, libssl3, curl for health checks),
#      made by debootstrap from this host's Debian mirror and imported with `docker import` (skipped when the base
#      image exists, or when --base names one of your organisation's: it must be glibc-based and have those libraries);
#   3. `docker build` of deploy/image/Dockerfile, which only copies.
#
#   deploy/image/make-image.sh [--base IMAGE] [--tag TAG]      (root, for debootstrap; docker must answer)
#
# SCALE_DEBIAN_MIRROR overrides the mirror (default: the first URI of this host's apt sources). A CUDA image: set
# SCALE_TORCH_BACKEND=cuda and give a --base with the NVIDIA driver's libraries.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
tag=scale:latest
base=""
while (( $# > 0 )); do
  case $1 in
    --base) base=${2:?--base needs an image}; shift 2 ;;
    --tag) tag=${2:?--tag needs a name}; shift 2 ;;
    *) echo "usage: $0 [--base IMAGE] [--tag TAG]" >&2; exit 2 ;;
  esac
done
for tool in docker dotnet; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is not installed" >&2; exit 2; }
done
docker version --format '{{.Server.Version}}' >/dev/null || { echo "$0: no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-default})" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clock=$SECONDS
echo "make-image: publishing scale (self-contained, linux-x64)"
if ! dotnet publish "$repo/Scale.Host" -c Release -r linux-x64 --self-contained -p:TorchBackend="${SCALE_TORCH_BACKEND:-cpu}" \
     -o "$work/app" > "$work/publish.log" 2>&1; then
  tail -n 30 "$work/publish.log" >&2
  exit 1
fi
mkdir "$work/data"
echo "make-image: published in $(( SECONDS - clock )) s ($(du -sh "$work/app" | cut -f1))"

if [[ -z $base ]]; then
  base=scale-base:bookworm
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { echo "$0: debootstrap is not installed (or give --base IMAGE)" >&2; exit 2; }
    mirror=${SCALE_DEBIAN_MIRROR:-$( { awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources;
                                       awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list; } 2>/dev/null | head -n 1 || true)}
    [[ -n $mirror ]] || { echo "$0: no Debian mirror in this host's apt sources: set SCALE_DEBIAN_MIRROR" >&2; exit 2; }
    clock=$SECONDS
    echo "make-image: making $base with debootstrap (bookworm, minbase)"
    if ! debootstrap --variant=minbase --include=libgomp1,libicu72,libssl3,curl,ca-certificates bookworm "$work/rootfs" "$mirror" \
         > "$work/debootstrap.log" 2>&1; then
      tail -n 30 "$work/debootstrap.log" >&2
      exit 1
    fi
    rm -rf "$work/rootfs/var/cache/apt/archives"/*.deb "$work/rootfs/var/lib/apt/lists"/*
    tar -C "$work/rootfs" -c . | docker import - "$base" >/dev/null
    rm -rf "$work/rootfs"
    echo "make-image: $base made in $(( SECONDS - clock )) s"
  fi
fi

clock=$SECONDS
if ! docker build -f "$repo/deploy/image/Dockerfile" --build-arg BASE="$base" -t "$tag" "$work" > "$work/build.log" 2>&1; then
  tail -n 30 "$work/build.log" >&2
  exit 1
fi
echo "make-image: $tag built from $base in $(( SECONDS - clock )) s"
