#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (Apache-2.0), pinned, for bench_existence
# --store seaweedfs: an S3 server whose LIST costs per page, not per bucket.
# Installed like .ci/peers.sh does the TES peers, into a cache outside the
# checkout keyed by name and version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tesengine-peers/seaweedfs-<version>/bin/weed
# Skipped when already built. Prints the binary's path on stdout; progress
# and the build time go to stderr.
set -euo pipefail

SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tesengine-peers"
root="$cache/seaweedfs-$SEAWEEDFS_VERSION"
weed="$root/bin/weed"

log() { echo "seaweedfs: $*" >&2; }

if [ -x "$weed" ]; then
  log "already built: $weed"
  echo "$weed"
  exit 0
fi
command -v go >/dev/null || { log "go not found: weed not built"; exit 1; }
# `go install weed@version` refuses it: its go.mod has a replace directive
# (go-bip39). So the module is fetched from the proxy (`go mod download`)
# and built as the main module from a private, writable copy of its source.
log "building weed $SEAWEEDFS_VERSION (go mod download + go build) into $root/bin"
start=$SECONDS
src=$(mktemp -d "${TMPDIR:-/tmp}/seaweedfs-src.XXXXXX")
trap 'chmod -R u+w "$src" 2>/dev/null; rm -rf "$src"' EXIT
dir=$(cd "$src" && GOFLAGS=-mod=mod go mod download -json \
  "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { log "go mod download gave no source folder"; exit 1; }
cp -r "$dir/." "$src/"
chmod -R u+w "$src"
mkdir -p "$root/bin"
if ! (cd "$src" && GOFLAGS=-mod=mod go build -o "$weed.partial" ./weed >&2); then
  rm -rf "$root"  # no half install for the next run to take as built
  log "build FAILED after $((SECONDS - start)) s"
  exit 1
fi
mv "$weed.partial" "$weed"
log "built in $((SECONDS - start)) s"
echo "$weed"
