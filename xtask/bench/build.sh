#!/usr/bin/env bash
# Registry-free build benchmark (docs/benchmarks.md, "build (registry-free)"), all in one run:
#   1. cold: every registry-free image from an empty layer cache, cargo target and state dir
#      (`cargo xtask build --registry-free`), for this tree (one workspace builder) and, when
#      OLD=1, for HEAD's tree in a git worktree (each Rust image its own `cargo build`), against
#      the host's cold `cargo build --release -p backend -p analytics-engine` (empty
#      CARGO_TARGET_DIR, crates already downloaded). The Debian base is made once, first, and
#      timed on its own ("plus the base image"); each side then builds on an image of its own
#      derived from it (FROM base + one LABEL: a new image ID, so no layer of one side is
#      cached for the other).
#   2. one-line change in backend (a string in backend/src/main.rs of the COPY of the tree):
#      the image rebuild against the host's incremental `cargo build --release -p backend`,
#      ROUNDS rounds, alternating which side goes first.
#   3. no-op build of the three services (backend analytics-engine web), NOOP times, against
#      `podman-compose build` of an equivalent compose file (the same recipes, arguments and
#      contexts), alternating.
# Every figure is printed with the load average (`uptime`) taken just before it.
# The checkout is never changed: the tree is copied (git's tracked and untracked files) to
# $BENCH_DIR/tree and its own xtask is built there (the xtask finds its checkout at compile
# time). Everything it makes is named v7testa* and removed at the end.
# Usage: OLD=1 PROFILE=1 ROUNDS=2 NOOP=5 xtask/bench/build.sh
#   COLD=0 skips the cold figures (part 1): the images are then built once, untimed, and with
#   REUSE=1 on the cargo target dirs a previous run left in $BENCH_DIR (parts 2 and 3 only).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
B=${BENCH_DIR:-/var/tmp/v7-a-bench}
old_tree=/var/tmp/v7-a-base
rounds=${ROUNDS:-2}
noops=${NOOP:-5}
if [ "${REUSE:-0}" = 1 ]; then
  rm -rf "$B/tree" "$B/state-base" "$B/figures" "$B"/state-new/build
else
  rm -rf "$B"
fi
mkdir -p "$B"
cat > "$B/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$B/containers.conf"

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }
load() { uptime | sed 's/.*load average: //'; }
report() { printf '%-58s %8s s   load %s\n' "$1" "$2" "$3" | tee -a "$B/figures"; }
# stamped LOG CMD...: CMD's output, each line prefixed with the time it came, into LOG.
stamped() {
  local log=$1; shift
  "$@" 2>&1 | while IFS= read -r l; do printf '%s %s\n' "$(now)" "$l"; done > "$log"
  return "${PIPESTATUS[0]}"
}
# The builds' part of a stamped xtask log: from the first "<service>: building" line to the end.
builds_part() {
  awk '/^[0-9.]+ [a-z-]+: building /{ if (!s) s = $1 } { e = $1 } END { printf "%.1f", e - s }' "$1"
}

cleanup() {
  set +e
  for p in v7testabase v7testanew v7testaold; do
    podman images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep "^localhost/$p-registry-free/" | xargs -r podman rmi -f >/dev/null 2>&1
    podman images -q --filter "label=v7.project=$p" 2>/dev/null | sort -u | xargs -r podman rmi -f >/dev/null 2>&1
  done
  podman images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep '^localhost/v7test-a-' | xargs -r podman rmi -f >/dev/null 2>&1
  if [ -d "$old_tree" ]; then git -C "$root" worktree remove --force "$old_tree"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- trees and xtasks
tree=$B/tree
mkdir -p "$tree"
git -C "$root" ls-files -z -co --exclude-standard | tar -C "$root" --null --ignore-failed-read -T - -cf - | tar -C "$tree" -xf -
cargo fetch --locked --manifest-path "$tree/Cargo.toml" -q
CARGO_TARGET_DIR="$B/xtask-new" cargo build -q -p xtask --locked --manifest-path "$tree/Cargo.toml"
xt_new="$B/xtask-new/debug/xtask"
sed 's/^name = "v7"$/name = "v7testanew"/' "$tree/docker/stack.toml" > "$B/stack-new.toml"
sed 's/^name = "v7"$/name = "v7testabase"/' "$tree/docker/stack.toml" > "$B/stack-base.toml"
grep -q '^name = "v7testanew"$' "$B/stack-new.toml"
if [ "${OLD:-0}" = 1 ]; then
  [ -d "$old_tree" ] && git -C "$root" worktree remove --force "$old_tree"
  git -C "$root" worktree add --detach "$old_tree" HEAD >/dev/null
  CARGO_TARGET_DIR="$B/xtask-old" cargo build -q -p xtask --locked --manifest-path "$old_tree/Cargo.toml"
  sed 's/^name = "v7"$/name = "v7testaold"/' "$old_tree/docker/stack.toml" > "$B/stack-old.toml"
  grep -q '^name = "v7testaold"$' "$B/stack-old.toml"
fi
new() { V7_STACK_FILE="$B/stack-new.toml" V7_STATE_DIR="$B/state-new" "$xt_new" "$@"; }
old() { V7_STACK_FILE="$B/stack-old.toml" V7_STATE_DIR="$B/state-old" "$B/xtask-old/debug/xtask" "$@"; }

# ---------------------------------------------------------------- 1. cold
l=$(load); t=$(now)
V7_STACK_FILE="$B/stack-base.toml" V7_STATE_DIR="$B/state-base" stamped "$B/base.log" "$xt_new" build --registry-free nats
report "base image (debootstrap + import) and nats" "$(since "$t")" "$l"
derive() { # derive PROJECT: a base of its own for PROJECT (new image ID, same recipe label)
  printf 'FROM localhost/v7testabase-registry-free/base:bookworm\nLABEL v7test-a.side=%s\n' "$1" |
    podman build -q --pull=never -t "localhost/$1-registry-free/base:bookworm" -f - "$B/empty" >/dev/null
}
mkdir -p "$B/empty"
derive v7testanew
[ "${OLD:-0}" = 1 ] && derive v7testaold

if [ "${COLD:-1}" = 1 ]; then
l=$(load); t=$(now)
(cd "$tree" && CARGO_TARGET_DIR="$B/host-target" cargo build -q --release --locked -p backend -p analytics-engine)
host_cold=$(since "$t"); report "host cold cargo build --release -p backend -p analytics-engine" "$host_cold" "$l"
size() { stat -c %s "$1" | awk '{ printf "%.1f MB", $1 / 1e6 }'; }
echo "  binaries (thin LTO, 4 codegen units): backend $(size "$B/host-target/release/backend"), analytics-engine $(size "$B/host-target/release/analytics-engine")" | tee -a "$B/figures"
# PROFILE=1: the same cold build with cargo's release defaults (no LTO, 16 codegen units), for
# docs/registry-free.md "Release profile for the images".
if [ "${PROFILE:-0}" = 1 ]; then
  l=$(load); t=$(now)
  (cd "$tree" && CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_TARGET_DIR="$B/host-target-defaults" \
    cargo build -q --release --locked -p backend -p analytics-engine)
  report "host cold, cargo's release defaults (lto off, 16 codegen units)" "$(since "$t")" "$l"
  echo "  binaries (defaults): backend $(size "$B/host-target-defaults/release/backend"), analytics-engine $(size "$B/host-target-defaults/release/analytics-engine")" | tee -a "$B/figures"
  rm -rf "$B/host-target-defaults"
fi

l=$(load); t=$(now)
stamped "$B/cold-new.log" new build --registry-free
new_cold=$(since "$t")
report "cold build --registry-free, this tree (total)" "$new_cold" "$l"
report "  of which the builds (first 'building' to the end)" "$(builds_part "$B/cold-new.log")" "$l"
grep -E '^[0-9.]+ +(rust-builder|analytics-engine|backend|web|nats|clickhouse|prometheus) +\S+ ' "$B/cold-new.log" | tail -8 | cut -d' ' -f2- || true

# The old way is measured when it can be; a failure there (podman's store changed under it by
# another process, say) is reported and the rest goes on.
if [ "${OLD:-0}" = 1 ]; then
  l=$(load); t=$(now)
  if stamped "$B/cold-old.log" old build --registry-free; then
    report "cold build --registry-free, HEAD (total)" "$(since "$t")" "$l"
    report "  of which the builds (first 'building' to the end)" "$(builds_part "$B/cold-old.log")" "$l"
    echo "cargo lock waits in HEAD's logs: $(cat "$B"/state-old/build/v7testaold/*.log | grep -c 'Blocking waiting for file lock')"
  else
    echo "HEAD's cold build failed after $(since "$t") s: $(tail -1 "$B/cold-old.log" | cut -d' ' -f2- | cut -c1-200)" | tee -a "$B/figures"
  fi
fi
awk -v a="$new_cold" -v b="$host_cold" 'BEGIN { printf "ratio cold image build (this tree, base excluded) / host cold: %.2f\n", a / b }' | tee -a "$B/figures"
else
  [ -d "$B/host-target" ] || (cd "$tree" && CARGO_TARGET_DIR="$B/host-target" cargo build -q --release --locked -p backend -p analytics-engine)
  l=$(load); t=$(now)
  stamped "$B/warm-new.log" new build --registry-free
  report "(not a figure) images built on the kept cargo target dir" "$(since "$t")" "$l"
fi

# ---------------------------------------------------------------- 2. one-line change
main="$tree/backend/src/main.rs"
grep -q 'backend: invalid configuration: {e}' "$main"
cp "$main" "$B/main.rs.orig"
change() { sed "s/backend: invalid configuration: {e}/backend: invalid configuration (bench $1): {e}/" "$B/main.rs.orig" > "$main"; }
host_incr() {
  l=$(load); t=$(now)
  (cd "$tree" && CARGO_TARGET_DIR="$B/host-target" cargo build -q --release --locked -p backend)
  report "round $1: host incremental cargo build --release -p backend" "$(since "$t")" "$l"
}
image_incr() {
  l=$(load); t=$(now)
  stamped "$B/incr-$1.log" new build --registry-free
  report "round $1: build --registry-free after the change" "$(since "$t")" "$l"
  grep -E '^[0-9.]+ [a-z-]+: (built|unchanged)' "$B/incr-$1.log" | cut -d' ' -f2- | cut -c1-60 || true
}
for r in $(seq "$rounds"); do
  change "$r"
  if [ $((r % 2)) = 1 ]; then image_incr "$r"; host_incr "$r"; else host_incr "$r"; image_incr "$r"; fi
done
cp "$B/main.rs.orig" "$main"

# ---------------------------------------------------------------- 3. no-op
new build --registry-free >/dev/null 2>&1 # back to the unchanged tree's images
cat > "$B/compose.build.yaml" <<EOF
# What \`cargo xtask build --registry-free backend analytics-engine web\` builds, as podman-compose
# builds it: the same recipes, contexts and arguments (the workspace builder is already built).
services:
  analytics-engine:
    image: localhost/v7test-a-compose-analytics-engine:latest
    build:
      context: $tree
      dockerfile: analytics-engine/Dockerfile.registry-free
      args:
        BASE: localhost/v7testanew-registry-free/base:bookworm
        BUILDER: localhost/v7testanew-registry-free/rust-builder:latest
  backend:
    image: localhost/v7test-a-compose-backend:latest
    build:
      context: $tree
      dockerfile: backend/Dockerfile.registry-free
      args:
        BASE: localhost/v7testanew-registry-free/base:bookworm
        BUILDER: localhost/v7testanew-registry-free/rust-builder:latest
  web:
    image: localhost/v7test-a-compose-web:latest
    build:
      context: $tree/web
      dockerfile: Dockerfile.registry-free
      args:
        BASE: localhost/v7testanew-registry-free/base:bookworm
EOF
# The first compose build fills nothing new (every layer is cached from the xtask's builds) but
# tags its three names; not timed.
(cd "$B" && podman-compose -f compose.build.yaml build >"$B/compose-first.log" 2>&1) || { tail -20 "$B/compose-first.log"; exit 1; }
for i in $(seq "$noops"); do
  if [ $((i % 2)) = 1 ]; then order="xtask compose"; else order="compose xtask"; fi
  for side in $order; do
    l=$(load); t=$(now)
    if [ "$side" = xtask ]; then
      new build --registry-free backend analytics-engine web > "$B/noop-$i.log" 2>&1
      if grep -qE '^[a-z-]+: building ' "$B/noop-$i.log"; then echo "no-op $i built something" >&2; exit 1; fi
      report "no-op $i: build --registry-free backend analytics-engine web" "$(since "$t")" "$l"
    else
      (cd "$B" && podman-compose -f compose.build.yaml build > "$B/compose-$i.log" 2>&1)
      report "no-op $i: podman-compose build (same three)" "$(since "$t")" "$l"
    fi
  done
done
echo; echo "figures: $B/figures"; cat "$B/figures"
