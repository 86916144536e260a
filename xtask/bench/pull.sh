#!/usr/bin/env bash
# Benchmark of `cargo xtask pull` (docs/benchmarks.md, "## pull").
#
# Five images (RANDOM_MB of random data each) in a local docker-registry behind the fault
# proxy, which adds DELAY_MS to every request. Measured in the same run:
#   seed     the seed's approach: a sequential loop (check, pull, up to 3 tries, waits 2, 4 s)
#   single   each image pulled alone with `podman pull` (the slowest one is the bar)
#   parallel five `podman pull`s started at once by the shell: what plain concurrency gets
#            (they queue on the image store's lock; see docs/benchmarks.md)
#   xtask    `xtask pull --jobs 5` of all five (plain-HTTP registry: through the pull relay)
#   no-relay `xtask pull --jobs 5 --no-relay` (how an HTTPS registry is pulled)
#   flaky    `xtask pull` with FAIL_RATE of requests failing at random (503, reset, cut blob),
#            FLAKY_RUNS times with different seeds, default settings: all five must land every run.
#   single_xtask  each image pulled alone with `xtask pull --image` (same fixed costs as xtask)
# Usage: xtask/bench/pull.sh  (env: RANDOM_MB=10 DELAY_MS=200 FAIL_RATE=0.3 FLAKY_RUNS=5 RUNS=3
#                              FLAKY_ATTEMPTS= (empty: the default --attempts))
# Everything it makes is named v7test-pull-bench-* or lives in its own registry, and is removed.
set -euo pipefail
RANDOM_MB=${RANDOM_MB:-10}
DELAY_MS=${DELAY_MS:-200}
FAIL_RATE=${FAIL_RATE:-0.3}
FLAKY_RUNS=${FLAKY_RUNS:-5}
RUNS=${RUNS:-3}
FLAKY_ATTEMPTS=${FLAKY_ATTEMPTS:-}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build -q -p xtask --release
XTASK=$CARGO_TARGET_DIR/release/xtask

WORK=$(mktemp -d /tmp/v7test-pull-bench-XXXXXX)
# A field of the pull's --json report, read with a JSON parser (EXPR over the document `d`).
report() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"; }
PIDS=()
IMAGES=()
cleanup() {
  for i in "${IMAGES[@]}"; do podman rmi -f -i "$i" >/dev/null 2>&1 || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REG_PORT=$(free_port)
cat > "$WORK/reg.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/data}}
http: {addr: 127.0.0.1:$REG_PORT}
EOF
docker-registry serve "$WORK/reg.yml" >/dev/null 2>&1 & PIDS+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$REG_PORT/v2/" >/dev/null && break; sleep 0.1; done

python3 "$ROOT/xtask/tests/support/faultproxy.py" --upstream "127.0.0.1:$REG_PORT" --delay-ms "$DELAY_MS" > "$WORK/proxy.out" & PIDS+=($!)
for _ in $(seq 50); do grep -q PORT "$WORK/proxy.out" 2>/dev/null && break; sleep 0.1; done
PROXY_PORT=$(awk '/PORT/{print $2}' "$WORK/proxy.out")
faults() { curl -sf -XPOST -d "$1" "http://127.0.0.1:$PROXY_PORT/__faults" >/dev/null; }

printf 'unqualified-search-registries = ["docker.io"]\n[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' \
  "$PROXY_PORT" "$REG_PORT" > "$WORK/registries.conf"
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
export V7_STATE_DIR=$WORK/state NO_COLOR=1

for n in 1 2 3 4 5; do
  mkdir -p "$WORK/img$n"
  echo "image $n" > "$WORK/img$n/hello"
  head -c $((RANDOM_MB * 1000000)) /dev/urandom > "$WORK/img$n/blob.bin"
  tar -C "$WORK/img$n" -cf "$WORK/img$n.tar" .
  local_ref=localhost/v7test-pull-bench-src$n
  podman import -q "$WORK/img$n.tar" "$local_ref" >/dev/null
  podman push -q --tls-verify=false "$local_ref" "127.0.0.1:$REG_PORT/v7test-pull/bench$n:1"
  podman rmi -f "$local_ref" >/dev/null
  IMAGES+=("127.0.0.1:$PROXY_PORT/v7test-pull/bench$n:1")
done
remove_all() { for i in "${IMAGES[@]}"; do podman rmi -f -i "$i" >/dev/null 2>&1 || true; done; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

seed_loop() {  # the seed's approach
  for img in "${IMAGES[@]}"; do
    podman image exists "$img" && continue
    for try in 1 2 3; do
      podman pull -q "$img" >/dev/null 2>&1 && break
      [ "$try" = 3 ] && { echo "seed: $img failed" >&2; break; }
      sleep $((try * 2))
    done
  done
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
args=(); for img in "${IMAGES[@]}"; do args+=(--image "$img"); done
parallel_podman() {  # plain concurrency: all five `podman pull`s at once
  local pids=()
  for img in "${IMAGES[@]}"; do podman pull -q "$img" >/dev/null & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
}

echo "five images of ${RANDOM_MB} MB random data, +${DELAY_MS} ms per request; $(nproc) cores"
echo "run  seed_s  podman_x5_parallel_s  xtask_s  xtask_no_relay_s  slowest_podman_alone_s  slowest_xtask_alone_s  xtask_peak_rss_kib"
: > "$WORK/rows"
for run in $(seq "$RUNS"); do
  faults "{\"delay_ms\": $DELAY_MS}"
  remove_all; t0=$(now); seed_loop; t1=$(now); seed=$(secs "$t0" "$t1")
  remove_all; t0=$(now); parallel_podman; t1=$(now); par=$(secs "$t0" "$t1")
  remove_all; slowest=0
  for img in "${IMAGES[@]}"; do
    t0=$(now); podman pull -q "$img" >/dev/null; t1=$(now); s=$(secs "$t0" "$t1")
    slowest=$(echo "if ($s > $slowest) $s else $slowest" | bc)
  done
  remove_all; slowest_x=0
  for img in "${IMAGES[@]}"; do
    t0=$(now); "$XTASK" pull --image "$img" >/dev/null 2>&1; t1=$(now); s=$(secs "$t0" "$t1")
    slowest_x=$(echo "if ($s > $slowest_x) $s else $slowest_x" | bc)
  done
  remove_all
  t0=$(now); "$XTASK" pull --jobs 5 --no-relay "${args[@]}" >/dev/null 2>&1; t1=$(now); norelay=$(secs "$t0" "$t1")
  remove_all
  t0=$(now); "$XTASK" pull --jobs 5 --json "${args[@]}" > "$WORK/out.json" 2>"$WORK/err.txt"; t1=$(now)
  xt=$(secs "$t0" "$t1")
  [ "$(report "$WORK/out.json" 'd["ok"]')" = True ] || { echo "xtask pull failed:"; tail -5 "$WORK/err.txt"; exit 1; }
  rss=$(report "$WORK/out.json" 'int(d["xtask_peak_rss_kib"])')
  printf '%s    %.2f   %.2f                  %.2f     %.2f              %.2f                    %.2f                   %s\n' \
    "$run" "$seed" "$par" "$xt" "$norelay" "$slowest" "$slowest_x" "$rss"
  echo "$seed $par $xt $norelay $slowest $slowest_x $rss" >> "$WORK/rows"
done
col() { awk -v c="$1" '{print $c}' "$WORK/rows" | median; }
m_seed=$(col 1); m_par=$(col 2); m_xt=$(col 3); m_nr=$(col 4); m_slow=$(col 5); m_slowx=$(col 6); m_rss=$(col 7)
echo
echo "medians over $RUNS runs: seed ${m_seed} s, podman x5 in parallel ${m_par} s, xtask ${m_xt} s, xtask --no-relay ${m_nr} s,"
echo "  slowest single podman pull ${m_slow} s, slowest single xtask pull ${m_slowx} s, xtask peak RSS ${m_rss} KiB"
printf 'xtask vs seed loop: %.2fx faster (goal >= 3)\n' "$(echo "$m_seed / $m_xt" | bc -l)"
printf 'xtask / slowest single podman pull: %.2f (goal <= 1.3); per run: %s\n' "$(echo "$m_xt / $m_slow" | bc -l)" \
  "$(awk '{printf "%.2f ", $3 / $5}' "$WORK/rows")"
printf 'xtask / five podman pulls started at once: %.2f\n' "$(echo "$m_xt / $m_par" | bc -l)"
printf 'xtask --no-relay vs seed loop: %.2fx faster; / slowest single podman pull: %.2f\n' \
  "$(echo "$m_seed / $m_nr" | bc -l)" "$(echo "$m_nr / $m_slow" | bc -l)"

echo
echo "flaky: ${FAIL_RATE} of requests fail at random (503, reset, cut blob), +${DELAY_MS} ms"
echo "xtask pull with default settings${FLAKY_ATTEMPTS:+ and --attempts $FLAKY_ATTEMPTS}; the seed loop makes 3 tries"
echo "run  ok  seconds  attempts(total)  requests_retried(total)  seed_loop_ok"
flaky_ok=0
for run in $(seq "$FLAKY_RUNS"); do
  faults "{\"delay_ms\": $DELAY_MS, \"fail_rate\": $FAIL_RATE, \"seed\": $run}"
  remove_all
  extra=(); [ -n "$FLAKY_ATTEMPTS" ] && extra=(--attempts "$FLAKY_ATTEMPTS")
  t0=$(now)
  if "$XTASK" pull --jobs 5 "${extra[@]}" --json "${args[@]}" > "$WORK/out.json" 2>"$WORK/err.txt"; then ok=yes; flaky_ok=$((flaky_ok + 1)); else ok=NO; fi
  t1=$(now)
  attempts=$(report "$WORK/out.json" 'int(sum(i["attempts"] for i in d["images"]))')
  retried=$(report "$WORK/out.json" 'int(sum(i["request_retries"] for i in d["images"]))')
  remove_all
  faults "{\"delay_ms\": $DELAY_MS, \"fail_rate\": $FAIL_RATE, \"seed\": $((run + 100))}"
  seed_loop 2>"$WORK/seed.txt"; if grep -q failed "$WORK/seed.txt"; then seed_ok="no ($(grep -c failed "$WORK/seed.txt")/5 failed)"; else seed_ok=yes; fi
  printf '%s    %s  %.2f    %s               %s                        %s\n' "$run" "$ok" "$(secs "$t0" "$t1")" "$attempts" "$retried" "$seed_ok"
  [ "$ok" = yes ] || tail -5 "$WORK/err.txt"
done
echo "all five images landed in $flaky_ok of $FLAKY_RUNS runs"
remove_all
