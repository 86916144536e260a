#!/usr/bin/env bash
# Smoke test of web/nginx.conf with the host's nginx, as a non-root user, on loopback ports.
#
# It renders the template the way the image's entrypoint does (envsubst of the V7_ variables),
# moves the /tmp paths into a scratch directory, serves web/dist on 127.0.0.1:$NGINX_PORT and puts
# scripts/standin_backend.py (a stand-in for backend, NOT the real one) behind /api/. Checks:
# `nginx -t`, nginx starting while backend is absent, the /api routing, caching headers and the
# single-page fallback. Every process it starts is ended by PID on exit.
#
# Needs: nginx, envsubst (gettext-base), python3, curl, and a build in web/dist (npm run build).
# Usage: scripts/nginx-smoke.sh    (NGINX_PORT / UPSTREAM_PORT override the ports 18300 / 18301)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
nginx_port="${NGINX_PORT:-18300}"
up_port="${UPSTREAM_PORT:-18301}"
dist="$here/dist"

for tool in nginx envsubst python3 curl; do
  command -v "$tool" >/dev/null || { echo "nginx-smoke: $tool is not installed" >&2; exit 2; }
done
[ -f "$dist/index.html" ] || { echo "nginx-smoke: no $dist/index.html; run npm run build" >&2; exit 2; }

work="$(mktemp -d /tmp/v7-web-nginx.XXXXXX)"
nginx_pid=""
up_pid=""
cleanup() {
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null || true
  [ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Run nginx as nobody when we are root, like the image runs it as nginx (uid 101).
as_user=()
# nginx reopens /dev/stdout and /dev/stderr by name, so they point at files that user owns
# (in a container they are the container's log pipes).
touch "$work/nginx.out" "$work/nginx.err"
if [ "$(id -u)" = 0 ]; then
  as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  chown 65534:65534 "$work" "$work/nginx.out" "$work/nginx.err"
fi

conf="$work/nginx.conf"
V7_BACKEND_ADDR="127.0.0.1:$up_port" V7_RESOLVER="127.0.0.1" \
  envsubst '${V7_BACKEND_ADDR} ${V7_RESOLVER}' <"$here/nginx.conf" |
  sed -e "s#/tmp/#$work/#g" \
      -e "s#listen 3000 #listen 127.0.0.1:$nginx_port #" \
      -e "s#root /usr/share/nginx/html;#root $dist;#" >"$conf"
chmod 644 "$conf"

passed=0
failed=0
check() { # check NAME COND...
  local name="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}
# fetch METHOD PATH [curl args...] -> sets status, body, headers
fetch() {
  local method="$1" path="$2"; shift 2
  local out="$work/body" hdr="$work/headers"
  status="$(curl -sS -o "$out" -D "$hdr" -w '%{http_code}' -X "$method" "$@" "http://127.0.0.1:$nginx_port$path")"
  body="$(tr -d '\0' <"$out")"
  headers="$(tr -d '\r' <"$hdr")"
}
has_header() { grep -qi "^$1" <<<"$headers"; }

echo "== nginx -t"
nginx_t() { "${as_user[@]}" nginx -t -q -e /dev/stderr -c "$1" >>"$work/nginx.out" 2>>"$work/nginx.err"; }
check "nginx -t accepts the rendered config" nginx_t "$conf"
# With the image's defaults the name "backend" does not resolve here; a fixed upstream would make
# nginx refuse to start ("host not found in upstream"), the resolver + variable does not.
sed "s#set \$v7_backend \"127.0.0.1:$up_port\";#set \$v7_backend \"backend:3000\";#" "$conf" >"$work/unresolvable.conf"
check "config with an unresolvable backend name passes nginx -t" \
  bash -c 'grep -q "set \$v7_backend \"backend:3000\";" "$1"' _ "$work/unresolvable.conf"
check "...and nginx -t accepts it" nginx_t "$work/unresolvable.conf"

echo "== nginx starts while backend is absent"
"${as_user[@]}" nginx -e /dev/stderr -c "$conf" -g 'daemon off;' >>"$work/nginx.out" 2>>"$work/nginx.err" &
nginx_pid=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$nginx_port/healthz" && break; sleep 0.1; done
fetch GET /healthz
check "/healthz is 200 ok" test "$status:$body" = "200:ok"
fetch GET /api/stats
check "/api/stats without backend is 502 JSON" test "$status:$body" = '502:{"error":"backend unavailable"}'
fetch GET /
check "/ serves index.html" grep -q '<title>V7 dashboard</title>' <<<"$body"
check "index.html is not cached" has_header 'Cache-Control: no-cache'

echo "== with the stand-in backend on 127.0.0.1:$up_port"
python3 "$here/scripts/standin_backend.py" "$up_port" 2>"$work/standin.log" &
up_pid=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$up_port/healthz" && break; sleep 0.1; done
fetch GET '/api/stats?window=60'
check "/api/stats is proxied with path and query" \
  test "$status $(grep -i '^X-Standin-Path' <<<"$headers" | cut -d' ' -f2)" = "200 /api/stats?window=60"
check "stats body arrives" grep -q '"page_view"' <<<"$body"
fetch GET /api/backend/healthz
check "/api/backend/healthz -> backend /healthz" test "$status:$body" = "200:ok"
fetch GET /api/backend/readyz
check "/api/backend/readyz -> backend /readyz, 503 passed through" \
  bash -c '[ "$1" = 503 ] && grep -q analytics_engine <<<"$2"' _ "$status" "$body"
fetch POST /api/events -H 'Content-Type: application/json' -d '{"kind":"page_view","value":1.5,"source":"web"}'
check "POST /api/events -> 202 with id" test "$status:$body" = '202:{"id": "standin-1"}'
fetch POST /api/events -H 'Content-Type: application/json' -d '{"value":1}'
check "POST /api/events -> 400 error passed through" test "$status:$body" = '400:{"error": "kind is required"}'

echo "== static files"
asset="$(cd "$dist" && ls assets/*.js | head -n1)"
fetch GET "/$asset" -H 'Accept-Encoding: gzip'
check "hashed asset is 200" test "$status" = 200
check "hashed asset is cached for a year" has_header 'Cache-Control: public, max-age=31536000, immutable'
check "assets are gzipped" has_header 'Content-Encoding: gzip'
fetch GET /assets/missing-0000.js
check "a missing asset is 404, not index.html" test "$status" = 404
fetch GET /some/client/route
check "unknown paths fall back to index.html" \
  bash -c '[ "$1" = 200 ] && grep -q "<title>V7 dashboard</title>" <<<"$2"' _ "$status" "$body"

echo "== nginx ran as $("${as_user[@]}" id -un) (pid $nginx_pid); its error log:"
sed 's/^/   /' "$work/nginx.err"
echo "== access log lines: $(wc -l <"$work/nginx.out")"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
