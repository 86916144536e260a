#!/usr/bin/env bash
# Deploy benchmark (docs/benchmarks.md, "deploy"), registry-free images, in ONE run:
#   baseline: the deploy of BASE (default e533426, before deploy converged), built from git in a
#             worktree: a second deploy of a running stack (it re-created every container), and
#             backend's outage while it redeploys;
#   no-op:    a second `cargo xtask deploy` of a running stack (goal < 1 s);
#   cold:     from all images present and nothing running to all healthy, against the slowest
#             dependency chain's own time to healthy (each service's "healthy after" time from
#             its own start, summed along the chain; goal <= 1.2x);
#   outage:   requests every 20 ms to backend directly and through web while backend alone is
#             replaced (its environment changed): failed requests and the longest gap;
#   status:   `cargo xtask status` of the running stack (goal < 0.3 s).
# Own project name (v7bench), host ports moved to 3xxxx: a developer's stack is not touched. Both
# sides run from git worktrees (BASE, and HEAD for "this checkout"), so edits in progress in the
# working tree neither rebuild images nor change what is measured; the new side shares the
# checkout's .v7 caches (host-fetched dependencies), its stack state lives under
# .v7/stacks/v7bench. The registry-free images of HEAD must exist (`cargo xtask build
# --registry-free` on a clean HEAD); they are tagged under the bench's name (base included) and the
# tags removed at the end, with the bench's containers, networks, volumes and secrets.
# Usage: RUNS=3 xtask/bench/deploy.sh     (BASE=<commit> to compare with another baseline)
set -euo pipefail
runs=${RUNS:-3}
base=${BASE:-e533426}
root=$(git rev-parse --show-toplevel)
cd "$root"
tmp=$(mktemp -d /var/tmp/v7bench-deploy.XXXXXX)
new_tree="$tmp/new"
git worktree add -q --detach "$new_tree" HEAD
(cd "$new_tree" && CARGO_TARGET_DIR="$tmp/new-target" cargo build -q -p xtask --locked)
xtask="$tmp/new-target/debug/xtask"
conf=$(ls -t .v7/podman/containers-*.conf | head -1)
pod() { CONTAINERS_CONF="$conf" podman "$@"; }

# name = v7bench; host ports moved into 30000-39999: "127.0.0.1:3000:3000" -> "127.0.0.1:33000:3000"
bench_stack() {
  python3 -c '
import re, sys
for line in open(sys.argv[1]):
    if line.startswith("name = \"v7\""):
        line = "name = \"v7bench\"\n"
    if line.lstrip().startswith("ports"):
        line = re.sub(r"\"([0-9.]+):([0-9]+):([0-9]+)\"", lambda m: "\"%s:%d:%s\"" % (m[1], 30000 + int(m[2]) % 10000, m[3]), line)
    sys.stdout.write(line)
' "$1"
}
bench_stack "$new_tree/docker/stack.toml" > "$tmp/stack.toml"
grep -q '^name = "v7bench"$' "$tmp/stack.toml"
backend_port=33000
web_port=35173
grep -q "\"127.0.0.1:$backend_port:3000\"" "$tmp/stack.toml" && grep -q "\"127.0.0.1:$web_port:3000\"" "$tmp/stack.toml"
echo "bench stack: project v7bench, backend on $backend_port, web on $web_port"

pod tag localhost/v7-registry-free/base:bookworm localhost/v7bench-registry-free/base:bookworm
for svc in nats clickhouse prometheus analytics-engine backend web; do
  pod image exists "localhost/v7-registry-free/$svc:latest" || { echo "missing localhost/v7-registry-free/$svc:latest: run cargo xtask build --registry-free" >&2; exit 1; }
  pod tag "localhost/v7-registry-free/$svc:latest" "localhost/v7bench-registry-free/$svc:latest"
done

# The baseline xtask, built from git in a worktree with its own target directory.
old_tree="$tmp/old"
git worktree add -q --detach "$old_tree" "$base"
bench_stack "$old_tree/docker/stack.toml" > "$tmp/old-stack.toml"
(cd "$old_tree" && CARGO_TARGET_DIR="$tmp/old-target" cargo build -q -p xtask)
old_xtask="$tmp/old-target/debug/xtask"

new() { V7_STACK_FILE="$tmp/stack.toml" V7_STATE_DIR="$root/.v7" NO_COLOR=1 "$xtask" "$@"; }
old() { V7_STACK_FILE="$tmp/old-stack.toml" V7_STATE_DIR="$tmp/old-state" NO_COLOR=1 "$old_xtask" "$@"; }
cleanup() {
  new down --volumes >/dev/null 2>&1 || true
  old down --volumes >/dev/null 2>&1 || true
  for svc in base:bookworm nats:latest clickhouse:latest prometheus:latest analytics-engine:latest backend:latest web:latest; do
    pod rmi "localhost/v7bench-registry-free/$svc" >/dev/null 2>&1 || true
  done
  rm -rf "$root/.v7/stacks/v7bench"
  git worktree remove --force "$old_tree" >/dev/null 2>&1 || true
  git worktree remove --force "$new_tree" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

seconds() { local log=$1; shift; local s=$(date +%s.%N); "$@" >"$log" 2>&1; awk -v a="$(date +%s.%N)" -v b="$s" 'BEGIN { printf "%.2f", a - b }'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# outage LOG CMD...: requests every 20 ms to backend /healthz and web /api/backend/healthz while
# CMD runs (and 2 s after); prints "failed F of N, longest gap G s" for each.
outage() {
  local log=$1; shift
  python3 - "$backend_port" "$web_port" "$tmp/outage.stop" > "$tmp/outage.out" <<'EOF' &
import sys, time, os, urllib.request
backend, web, stop = sys.argv[1], sys.argv[2], sys.argv[3]
targets = {"backend": f"http://127.0.0.1:{backend}/healthz", "web": f"http://127.0.0.1:{web}/api/backend/healthz"}
stats = {k: {"n": 0, "failed": 0, "last_ok": time.monotonic(), "gap": 0.0} for k in targets}
end = None
while end is None or time.monotonic() < end:
    if end is None and os.path.exists(stop):
        end = time.monotonic() + 2
    for name, url in targets.items():
        s = stats[name]; s["n"] += 1
        try:
            ok = urllib.request.urlopen(url, timeout=1).status == 200
        except Exception:
            ok = False
        now = time.monotonic()
        if ok:
            s["gap"] = max(s["gap"], now - s["last_ok"]); s["last_ok"] = now
        else:
            s["failed"] += 1
    time.sleep(0.02)
for name, s in stats.items():
    print(f"{name}: failed {s['failed']} of {s['n']}, longest gap {s['gap']:.2f} s")
EOF
  local load=$!
  rm -f "$tmp/outage.stop"; sleep 1
  "$@" >"$log" 2>&1 || { echo "failed: $* (log $log)" >&2; cat "$log" >&2; kill $load; exit 1; }
  touch "$tmp/outage.stop"; wait $load; rm -f "$tmp/outage.stop"
  cat "$tmp/outage.out"
}

# The slowest chain of the stack: the most "healthy after" seconds summed along depends_on.
chain() {
  python3 - "$1" "$tmp/stack.toml" <<'EOF'
import re, sys, tomllib
log, stack = open(sys.argv[1]).read(), tomllib.load(open(sys.argv[2], "rb"))
took = {m.group(1): float(m.group(2)) for m in re.finditer(r"^([a-z-]+): healthy after ([0-9.]+) s", log, re.M)}
memo = {}
def total(s):
    if s not in memo:
        deps = [d for d in stack["services"][s].get("depends_on", []) if d in took]
        best = max(deps, key=total, default=None)
        memo[s] = (took[s] + (total(best)[0] if best else 0), (total(best)[1] if best else []) + [s])
    return memo[s]
t, path = max((total(s) for s in took), key=lambda x: x[0])
print(f"{t:.2f} {' > '.join(path)}")
EOF
}

echo "== baseline: the deploy of $base"
old deploy --registry-free --no-build --timeout 180 > "$tmp/old-first.log" 2>&1 || { cat "$tmp/old-first.log"; exit 1; }
: > "$tmp/old-noop"
for i in $(seq "$runs"); do seconds "$tmp/old-again.log" old deploy --registry-free --no-build --timeout 180 >> "$tmp/old-noop"; echo >> "$tmp/old-noop"; done
echo "baseline second deploy (re-creates everything): $(median < "$tmp/old-noop") s (median of $runs)"
echo "baseline outage of backend while it redeploys:"
old_outage=$(outage "$tmp/old-outage.log" old deploy --registry-free --no-build --timeout 180)
echo "$old_outage"
old down --volumes > /dev/null 2>&1

echo "== this checkout"
: > "$tmp/cold"; : > "$tmp/chain"; : > "$tmp/ratio"
for i in $(seq "$runs"); do
  new down > /dev/null 2>&1 || true
  cold=$(seconds "$tmp/cold.log" new deploy --registry-free --no-build --timeout 180) || { cat "$tmp/cold.log"; exit 1; }
  read -r chain_s chain_path < <(chain "$tmp/cold.log")
  echo "run $i: nothing running -> all healthy $cold s; slowest chain $chain_path: $chain_s s"
  echo "$cold" >> "$tmp/cold"; echo "$chain_s" >> "$tmp/chain"
  awk -v a="$cold" -v b="$chain_s" 'BEGIN { printf "%.3f\n", a / b }' >> "$tmp/ratio"
done
: > "$tmp/noop"
# One deploy with the build check first: the images must be up to date for a no-op to be one.
new deploy --registry-free > "$tmp/warm.log" 2>&1 || { cat "$tmp/warm.log"; exit 1; }
if grep -q ": building" "$tmp/warm.log"; then echo "images of HEAD were not up to date (rebuilt); run again" >&2; fi
for i in $(seq "$runs"); do
  seconds "$tmp/noop.log" new deploy --registry-free >> "$tmp/noop"; echo >> "$tmp/noop"
  grep -q "nothing to change" "$tmp/noop.log" || { echo "the second deploy changed something:"; cat "$tmp/noop.log"; exit 1; }
done
: > "$tmp/status"
for i in $(seq 5); do seconds "$tmp/status.log" new status >> "$tmp/status"; echo >> "$tmp/status"; done
cp "$tmp/stack.toml" "$tmp/stack.orig"
sed -i 's/V7_ANALYTICS_URL = "http:\/\/analytics-engine:50051", RUST_LOG = "info"/&, V7_BENCH_MARK = "1"/' "$tmp/stack.toml"
grep -q V7_BENCH_MARK "$tmp/stack.toml"
echo "outage of backend while deploy replaces it alone:"
new_outage=$(outage "$tmp/new-outage.log" new deploy --registry-free --no-build --timeout 180)
echo "$new_outage"
grep -q "replace  backend            environment changed" "$tmp/new-outage.log"
replaced=$(grep -c ": replacing" "$tmp/new-outage.log")
[ "$replaced" = 1 ] || { echo "expected backend alone to be replaced:"; cat "$tmp/new-outage.log"; exit 1; }

echo
echo "| measure (median of $runs) | seconds | goal |"
echo "|---|---|---|"
echo "| baseline ($base): second deploy of a running stack | $(median < "$tmp/old-noop") | |"
echo "| no-op deploy (everything up to date) | $(median < "$tmp/noop") | < 1 |"
echo "| ratio no-op / baseline | $(awk -v a="$(median < "$tmp/noop")" -v b="$(median < "$tmp/old-noop")" 'BEGIN { printf "%.3f", a / b }') | |"
echo "| nothing running -> all healthy | $(median < "$tmp/cold") | |"
echo "| slowest dependency chain's own time to healthy | $(median < "$tmp/chain") | |"
echo "| ratio (median of the per-run ratios) | $(median < "$tmp/ratio") | <= 1.2 |"
echo "| status of the running stack (median of 5) | $(median < "$tmp/status") | < 0.3 |"
echo
echo "outage while backend is redeployed (requests every 20 ms, loopback):"
echo "  baseline ($base, re-creates everything): $(echo "$old_outage" | tr '\n' ';')"
echo "  this checkout (replaces backend alone):  $(echo "$new_outage" | tr '\n' ';')"
