#!/usr/bin/env bash
# Registry-free benchmark (docs/benchmarks.md, "registry-free"):
#   cold:    from no images (base included) and empty dependency caches to every image built
#   rebuild: after a one-line change in backend/src/main.rs
#   no-op:   nothing changed
# It runs under its own project name (images localhost/v7bench-registry-free/*) and state dir, so it
# neither uses nor disturbs a developer's images and caches, and removes its images at the end.
# Usage: RUNS=3 xtask/bench/registry-free.sh      (medians over RUNS; default 1, a cold run is minutes)
set -euo pipefail
runs=${RUNS:-1}
root=$(git rev-parse --show-toplevel)
cd "$root"
cargo build -q -p xtask --locked
xtask="${CARGO_TARGET_DIR:-$root/target}/debug/xtask"
tmp=$(mktemp -d /var/tmp/v7bench-rf.XXXXXX)
sed 's/^name = "v7"$/name = "v7bench"/' docker/stack.toml > "$tmp/stack.toml"
grep -q '^name = "v7bench"$' "$tmp/stack.toml"
export V7_STACK_FILE="$tmp/stack.toml" V7_STATE_DIR="$tmp/state"
cp backend/src/main.rs "$tmp/main.rs.orig"

remove_images() {
  podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/v7bench-registry-free/' | xargs -r podman rmi -f >/dev/null 2>&1 || true
}
cleanup() {
  cp "$tmp/main.rs.orig" backend/src/main.rs
  remove_images
  rm -rf "$tmp"
}
trap cleanup EXIT

# seconds LOG CMD...: runs CMD with its output in LOG, prints the wall time.
seconds() { local log=$1; shift; local s=$(date +%s.%N); "$@" >"$log" 2>&1; awk -v a="$(date +%s.%N)" -v b="$s" 'BEGIN { printf "%.1f", a - b }'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: > "$tmp/cold"; : > "$tmp/rebuild"; : > "$tmp/noop"
for i in $(seq "$runs"); do
  remove_images
  rm -rf "$tmp/state"
  cp "$tmp/main.rs.orig" backend/src/main.rs
  cold=$(seconds "$tmp/cold.log" "$xtask" build --registry-free)
  echo "// v7 bench one-line change $i $(date +%s%N)" >> backend/src/main.rs
  rebuild=$(seconds "$tmp/rebuild.log" "$xtask" build --registry-free)
  noop=$(seconds "$tmp/noop.log" "$xtask" build --registry-free)
  rebuilt=$(grep -E '^[a-z-]+: built ' "$tmp/rebuild.log" | cut -d: -f1 | tr '\n' ' ')
  if [ "$rebuilt" != "backend " ]; then echo "run $i: the rebuild built [$rebuilt], expected backend only" >&2; exit 1; fi
  if grep -qE '^[a-z-]+: built ' "$tmp/noop.log"; then echo "run $i: the no-op build built something" >&2; exit 1; fi
  echo "run $i: cold $cold s, one-line backend rebuild $rebuild s, no-op $noop s"
  echo "$cold" >> "$tmp/cold"; echo "$rebuild" >> "$tmp/rebuild"; echo "$noop" >> "$tmp/noop"
done
echo
echo "| measure (median of $runs) | seconds |"
echo "|---|---|"
echo "| cold: no images, empty caches -> every image | $(median < "$tmp/cold") |"
echo "| rebuild after a one-line change in backend | $(median < "$tmp/rebuild") |"
echo "| no-op build | $(median < "$tmp/noop") |"
echo "| ratio rebuild / cold | $(awk -v a="$(median < "$tmp/rebuild")" -v b="$(median < "$tmp/cold")" 'BEGIN { printf "%.3f", a / b }') |"
echo
echo "every run: the rebuild built backend only, the no-op build built nothing"
