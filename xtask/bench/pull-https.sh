#!/usr/bin/env bash
# Benchmark of `cargo xtask pull` through an HTTPS registry mirror (docs/benchmarks.md, "## pull",
# issue 12). The plain-HTTP benchmark is xtask/bench/pull.sh.
#
# IMAGES images (RANDOM_MB of random data each) in a local docker-registry serving TLS with a CA
# made here by openssl, behind the fault proxy (xtask/tests/support/faultproxy.py) serving TLS
# too, which adds DELAY_MS to every request. The proxy is a docker.io mirror: the images are
# `docker.io/library/v7test-pull-bench-N:1`, and docker.io itself is not reachable here, so an
# image the mirror does not deliver is lost. Trust: the CA in a certs.d directory of this run
# (`V7_CERTS_D` for the xtask, `--cert-dir` for podman), never the system's store.
# Measured in the same run, one after the other, the order alternating from run to run:
#   floor    IMAGES `podman pull`s started at once, straight from the registry (no proxy: zero
#            added latency): the goal's bar (xtask <= 1.3 x floor)
#   seed     the seed's approach through the mirror: a sequential loop (check, pull, up to 3
#            tries, waits 2, 4 s)
#   alone    the first image alone through the mirror, `podman pull` and `xtask pull --image`
#   via mirror  all of them at once by `podman pull` through the same mirror: not the goal's
#            bar, but what the mirror path itself costs (the fault proxy's TLS and latency)
#   xtask    `xtask pull --registry-mirror https://...` of all of them, DEFAULT settings (no
#            --jobs, no --attempts: the stack file's [pull], or STACK_FILE's)
# Then FLAKY_RUNS runs with FAIL_RATE of requests failing at random (FAIL_KINDS, by default half
# 503 and half reset; the /v2/ probe too unless FAIL_V2=0), different seeds, default settings:
# every image must land in every run; the seed loop in the same conditions for SEED_FLAKY_RUNS.
# Usage: xtask/bench/pull-https.sh  (env: IMAGES=5 RANDOM_MB=40 DELAY_MS=200 RUNS=3
#   FAIL_RATE=0.3 FAIL_KINDS='["status","reset"]' FAIL_V2=1 FLAKY_RUNS=20 SEED_FLAKY_RUNS=5
#   OUTAGE_SECS=5 (0: skip the --no-relay outage check) STACK_FILE= (another stack file for the xtask's defaults, to compare candidates) CARGO_TARGET_DIR)
# Everything it makes is named v7test-pull-bench-* or lives in its own registry, and is removed.
set -euo pipefail
IMAGES_N=${IMAGES:-5}
RANDOM_MB=${RANDOM_MB:-40}
DELAY_MS=${DELAY_MS:-200}
RUNS=${RUNS:-3}
FAIL_RATE=${FAIL_RATE:-0.3}
FAIL_KINDS=${FAIL_KINDS:-'["status", "reset"]'}
FAIL_V2=${FAIL_V2:-1}
FLAKY_RUNS=${FLAKY_RUNS:-20}
SEED_FLAKY_RUNS=${SEED_FLAKY_RUNS:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build -q -p xtask --release
XTASK=$CARGO_TARGET_DIR/release/xtask
[ -n "${STACK_FILE:-}" ] && export V7_STACK_FILE=$STACK_FILE

WORK=$(mktemp -d /tmp/v7test-pull-bench-XXXXXX)
report() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"; }
PIDS=()
NAMES=()
remove_all() { for i in "${NAMES[@]}"; do podman rmi -f -i "$i" >/dev/null 2>&1 || true; done; }
cleanup() {
  remove_all
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The CA and a server certificate for 127.0.0.1.
(
  cd "$WORK"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=v7test pull bench CA" -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
  echo "subjectAltName=IP:127.0.0.1" > san.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile san.ext -out server.crt 2>/dev/null
)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REG_PORT=$(free_port)
cat > "$WORK/reg.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/data}}
http: {addr: 127.0.0.1:$REG_PORT, tls: {certificate: $WORK/server.crt, key: $WORK/server.key}}
EOF
docker-registry serve "$WORK/reg.yml" >/dev/null 2>&1 & PIDS+=($!)
for _ in $(seq 50); do curl -sf --cacert "$WORK/ca.crt" "https://127.0.0.1:$REG_PORT/v2/" >/dev/null && break; sleep 0.1; done

python3 "$ROOT/xtask/tests/support/faultproxy.py" --upstream "127.0.0.1:$REG_PORT" --delay-ms "$DELAY_MS" \
  --tls-cert "$WORK/server.crt" --tls-key "$WORK/server.key" --upstream-ca "$WORK/ca.crt" > "$WORK/proxy.out" & PIDS+=($!)
for _ in $(seq 50); do grep -q PORT "$WORK/proxy.out" 2>/dev/null && break; sleep 0.1; done
PROXY_PORT=$(awk '/PORT/{print $2}' "$WORK/proxy.out")
faults() { curl -sf -XPOST -d "$1" "http://127.0.0.1:$PROXY_PORT/__faults" >/dev/null; }
MIRROR=https://127.0.0.1:$PROXY_PORT

CERTS=$WORK/certs.d
for p in "$REG_PORT" "$PROXY_PORT"; do mkdir -p "$CERTS/127.0.0.1:$p"; cp "$WORK/ca.crt" "$CERTS/127.0.0.1:$p/ca.crt"; done
# podman's own pulls: docker.io through the mirror. The xtask writes its own mirror configuration
# (from --registry-mirror); its origin configuration has no mirror.
printf 'unqualified-search-registries = ["docker.io"]\n[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n[[registry.mirror]]\nlocation = "127.0.0.1:%s"\n' \
  "$PROXY_PORT" > "$WORK/mirror.conf"
printf 'unqualified-search-registries = ["docker.io"]\n' > "$WORK/origin.conf"
export V7_STATE_DIR=$WORK/state V7_CERTS_D=$CERTS NO_COLOR=1
mkdir -p "$V7_STATE_DIR"
pp() { CONTAINERS_REGISTRIES_CONF=$WORK/mirror.conf podman "$@"; }
xt() { CONTAINERS_REGISTRIES_CONF=$WORK/origin.conf "$XTASK" "$@"; }

IMGS=()    # through the mirror
DIRECT=()  # straight from the registry (the floor)
for n in $(seq "$IMAGES_N"); do
  mkdir -p "$WORK/img$n"
  echo "image $n" > "$WORK/img$n/hello"
  head -c $((RANDOM_MB * 1000000)) /dev/urandom > "$WORK/img$n/blob.bin"
  tar -C "$WORK/img$n" -cf "$WORK/img$n.tar" .
  rm -rf "$WORK/img$n"
  local_ref=localhost/v7test-pull-bench-src$n
  podman import -q "$WORK/img$n.tar" "$local_ref" >/dev/null
  rm -f "$WORK/img$n.tar"
  podman push -q --cert-dir "$CERTS/127.0.0.1:$REG_PORT" "$local_ref" "127.0.0.1:$REG_PORT/library/v7test-pull-bench-$n:1"
  podman rmi -f "$local_ref" >/dev/null
  IMGS+=("docker.io/library/v7test-pull-bench-$n:1")
  DIRECT+=("127.0.0.1:$REG_PORT/library/v7test-pull-bench-$n:1")
done
NAMES=("${IMGS[@]}" "${DIRECT[@]}")
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
load() { awk '{print $1}' /proc/loadavg; }

seed_loop() {  # the seed's approach
  for img in "${IMGS[@]}"; do
    pp image exists "$img" && continue
    for try in 1 2 3; do
      pp pull -q --cert-dir "$CERTS/127.0.0.1:$PROXY_PORT" "$img" >/dev/null 2>&1 && break
      [ "$try" = 3 ] && { echo "seed: $img failed" >&2; break; }
      sleep $((try * 2))
    done
  done
}
floor() {  # plain concurrency from the zero-latency registry
  local pids=()
  for img in "${DIRECT[@]}"; do podman pull -q --cert-dir "$CERTS/127.0.0.1:$REG_PORT" "$img" >/dev/null & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
}
mirror_parallel() {  # not the goal's bar: all images at once by podman through the same mirror (proxy), for where the time goes
  local pids=()
  for img in "${IMGS[@]}"; do pp pull -q --cert-dir "$CERTS/127.0.0.1:$PROXY_PORT" "$img" >/dev/null & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
}
args=(--registry-mirror "$MIRROR"); for img in "${IMGS[@]}"; do args+=(--image "$img"); done
xtask_all() {
  xt pull --json "${args[@]}" > "$WORK/out.json" 2>"$WORK/err.txt" || { tail -5 "$WORK/err.txt" >&2; return 1; }
}
timed() { remove_all; local t0 t1; t0=$(now); "$@" >/dev/null 2>"$WORK/timed.err" || { echo "failed: $*" >&2; cat "$WORK/timed.err" >&2; }; t1=$(now); secs "$t0" "$t1"; }

echo "$IMAGES_N images of ${RANDOM_MB} MB random data, HTTPS mirror +${DELAY_MS} ms per request; $(nproc) cores"
echo "xtask defaults: $(awk '/^\[/{p = ($0 == "[pull]")} p && /^(jobs|attempts) /' "${STACK_FILE:-$ROOT/docker/stack.toml}" | tr '\n' ' ')"
echo "run  load  floor_s  seed_s  podman_alone_s  xtask_alone_s  xtask_s  xtask/floor  request_retries  podman_parallel_via_mirror_s"
: > "$WORK/rows"
for run in $(seq "$RUNS"); do
  faults "{\"delay_ms\": $DELAY_MS}"
  l=$(load)
  if [ $((run % 2)) = 1 ]; then
    fl=$(timed floor); xs=$(timed xtask_all); mp=$(timed mirror_parallel); se=$(timed seed_loop)
    pa=$(timed pp pull -q --cert-dir "$CERTS/127.0.0.1:$PROXY_PORT" "${IMGS[0]}")
    xa=$(timed xt pull --registry-mirror "$MIRROR" --image "${IMGS[0]}")
  else
    xa=$(timed xt pull --registry-mirror "$MIRROR" --image "${IMGS[0]}")
    pa=$(timed pp pull -q --cert-dir "$CERTS/127.0.0.1:$PROXY_PORT" "${IMGS[0]}")
    se=$(timed seed_loop); mp=$(timed mirror_parallel); xs=$(timed xtask_all); fl=$(timed floor)
  fi
  retried=$(report "$WORK/out.json" 'int(sum(i["request_retries"] for i in d["images"]))')
  [ "$(report "$WORK/out.json" 'd["ok"]')" = True ] || { echo "xtask pull failed"; exit 1; }
  printf '%s    %s  %.2f     %.2f    %.2f            %.2f           %.2f     %.2f         %s                %.2f\n' \
    "$run" "$l" "$fl" "$se" "$pa" "$xa" "$xs" "$(echo "$xs / $fl" | bc -l)" "$retried" "$mp"
  echo "$fl $se $pa $xa $xs" >> "$WORK/rows"
done
col() { awk -v c="$1" '{print $c}' "$WORK/rows" | median; }
m_fl=$(col 1); m_se=$(col 2); m_pa=$(col 3); m_xa=$(col 4); m_xs=$(col 5)
echo
echo "medians over $RUNS runs: floor ${m_fl} s, seed ${m_se} s, podman alone ${m_pa} s, xtask alone ${m_xa} s, xtask ${m_xs} s"
printf 'xtask / floor: %.2f (goal <= 1.3); per run: %s\n' "$(echo "$m_xs / $m_fl" | bc -l)" \
  "$(awk '{printf "%.2f ", $5 / $1}' "$WORK/rows")"
printf 'xtask vs seed loop: %.2fx faster; xtask / podman alone: %.2f\n' "$(echo "$m_se / $m_xs" | bc -l)" "$(echo "$m_xs / $m_pa" | bc -l)"

if [ "${TRACE:-0}" = 1 ]; then  # where the xtask's time goes: the mirror's requests, in time
  faults "{\"delay_ms\": $DELAY_MS}"; remove_all
  curl -sf -XPOST "http://127.0.0.1:$PROXY_PORT/__clear" >/dev/null
  t0=$(now); xtask_all; t1=$(now)
  echo "trace: xtask $(secs "$t0" "$t1") s; mirror requests (s from the first, method, path, status):"
  curl -sf "http://127.0.0.1:$PROXY_PORT/__log" | python3 -c 'import json,sys; l=json.load(sys.stdin); t=l[0]["t"] if l else 0
for e in l: print("  %.3f %s %s %s" % (e["t"]-t, e["method"], e["path"][-60:], e["status"]))'
fi
if [ "${OUTAGE_SECS:-5}" != 0 ]; then  # without the relay: an outage, then a permanent error
  OUTAGE=${OUTAGE_SECS:-5}
  faults "{\"delay_ms\": $DELAY_MS, \"rules\": [{\"path\": \"/manifests/\", \"action\": \"status\", \"status\": 503}]}"
  remove_all; t0=$(now)
  xt pull --no-relay --json --registry-mirror "$MIRROR" --image "${IMGS[0]}" > "$WORK/outage.json" 2>"$WORK/outage.err" & xp=$!
  sleep "$OUTAGE"; faults "{\"delay_ms\": $DELAY_MS}"
  if wait "$xp"; then ok=yes; else ok=NO; fi; t1=$(now)
  echo "no relay, every manifest answered 503 for ${OUTAGE} s, default settings: landed $ok after $(secs "$t0" "$t1") s," \
    "$(report "$WORK/outage.json" 'int(d["images"][0]["attempts"])') attempts"
  [ "$ok" = yes ] || tail -3 "$WORK/outage.err"
  t0=$(now); xt pull --no-relay --json --image "127.0.0.1:$REG_PORT/library/v7test-pull-bench-1:nope" > "$WORK/perm.json" 2>"$WORK/perm.err" || true; t1=$(now)
  tail -1 "$WORK/perm.err"
  echo "no relay, unknown tag (404): failed in $(secs "$t0" "$t1") s, $(report "$WORK/perm.json" 'int(d["images"][0]["attempts"])') attempt(s)"
fi
[ "$FLAKY_RUNS" = 0 ] && exit 0
echo
v2=false; [ "$FAIL_V2" = 1 ] && v2=true
echo "flaky: ${FAIL_RATE} of requests fail at random (kinds ${FAIL_KINDS}, /v2/ too: $v2), +${DELAY_MS} ms; xtask at default settings"
echo "run  load  ok   seconds  attempts(total)  requests_retried(total)  seed_loop_ok"
flaky_ok=0; : > "$WORK/flaky"
for run in $(seq "$FLAKY_RUNS"); do
  l=$(load)
  faults "{\"delay_ms\": $DELAY_MS, \"fail_rate\": $FAIL_RATE, \"fail_kinds\": $FAIL_KINDS, \"fail_v2\": $v2, \"seed\": $run}"
  remove_all
  t0=$(now)
  if xt pull --json "${args[@]}" > "$WORK/out.json" 2>"$WORK/err.txt"; then ok=yes; flaky_ok=$((flaky_ok + 1)); else ok=NO; fi
  t1=$(now); s=$(secs "$t0" "$t1"); echo "$s" >> "$WORK/flaky"
  attempts=$(report "$WORK/out.json" 'int(sum(i["attempts"] for i in d["images"]))' 2>/dev/null || echo '?')
  retried=$(report "$WORK/out.json" 'int(sum(i["request_retries"] for i in d["images"]))' 2>/dev/null || echo '?')
  seed_ok=-
  if [ "$run" -le "$SEED_FLAKY_RUNS" ]; then
    remove_all
    faults "{\"delay_ms\": $DELAY_MS, \"fail_rate\": $FAIL_RATE, \"fail_kinds\": $FAIL_KINDS, \"fail_v2\": $v2, \"seed\": $((run + 100))}"
    seed_loop 2>"$WORK/seed.txt"
    if grep -q failed "$WORK/seed.txt"; then seed_ok="no ($(grep -c failed "$WORK/seed.txt")/$IMAGES_N failed)"; else seed_ok=yes; fi
  fi
  printf '%s    %s  %s  %.2f     %s               %s                        %s\n' "$run" "$l" "$ok" "$s" "$attempts" "$retried" "$seed_ok"
  [ "$ok" = yes ] || tail -5 "$WORK/err.txt"
done
echo "all $IMAGES_N images landed in $flaky_ok of $FLAKY_RUNS runs; median $(median < "$WORK/flaky") s, max $(sort -n "$WORK/flaky" | tail -1) s"
remove_all
