#!/usr/bin/env bash
# Builds the real TES peers the interop tests (tests/peers/) drive, pinned,
# into a cache outside the checkout keyed by name and version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tesengine-peers/<name>-<version>/
# CI runs in a fresh clone, so a cache inside the clone would be rebuilt
# every run; this one survives from a session to its CI run on one machine.
# A peer already built is skipped. Each build is timed (seconds on stdout).
#
# Prints `export NAME=...` lines for the binaries that exist, for `eval`.
# Funnel: its module is not served by the Go module proxy this machine
# reaches (HTTP 403 "This module version is not available."), so its build
# is tried once and the exact error is reported; it is not a failure.
set -uo pipefail

SPROCKET_VERSION=0.33.0
FUNNEL_VERSION=v0.11.4
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tesengine-peers"
mkdir -p "$cache"

log() { echo "peers: $*" >&2; }

build_sprocket() {
  local root="$cache/sprocket-$SPROCKET_VERSION"
  if [ -x "$root/bin/sprocket" ]; then
    log "sprocket $SPROCKET_VERSION already built in $root"
    return 0
  fi
  if ! command -v cargo >/dev/null; then
    log "cargo not found: cannot build sprocket"
    return 1
  fi
  log "building sprocket $SPROCKET_VERSION (cargo install --locked) into $root"
  local start=$SECONDS
  # a private target dir: a failed or interrupted build leaves no half install
  if cargo install sprocket --locked --version "$SPROCKET_VERSION" --root "$root" \
    --target-dir "$cache/.cargo-target" >&2; then
    log "sprocket built in $((SECONDS - start)) s"
    rm -rf "$cache/.cargo-target"
    return 0
  fi
  log "sprocket build FAILED after $((SECONDS - start)) s"
  return 1
}

build_funnel() {
  local root="$cache/funnel-$FUNNEL_VERSION"
  if [ -x "$root/bin/funnel" ]; then
    log "funnel $FUNNEL_VERSION already built in $root"
    return 0
  fi
  command -v go >/dev/null || { log "go not found: funnel not built"; return 1; }
  local start=$SECONDS out
  if out=$(GOBIN="$root/bin" GOFLAGS=-mod=mod \
    go install "github.com/ohsu-comp-bio/funnel@$FUNNEL_VERSION" 2>&1); then
    log "funnel built in $((SECONDS - start)) s"
    return 0
  fi
  rm -rf "$root"
  log "funnel $FUNNEL_VERSION cannot be built here (tests use the Funnel profile of the fake): $out"
  return 1
}

status=0
if build_sprocket; then
  echo "export SPROCKET=$cache/sprocket-$SPROCKET_VERSION/bin/sprocket"
else
  status=1
fi
if build_funnel; then
  echo "export FUNNEL=$cache/funnel-$FUNNEL_VERSION/bin/funnel"
fi
exit $status
