#!/usr/bin/env bash
# Tries test/browser/dashboard_test.py WITHOUT a deployed stack: `vite preview` serves dist/ and
# proxies /api/ (vite.config.ts) to scripts/standin_api.py, a STAND-IN for backend that answers
# from memory. It checks the page and the test script, not backend: the real check is the same
# test against a deployed stack (V7_WEB_URL=http://<web>:3000), which is what the end-to-end
# suite runs. Every process started here is ended by PID on exit.
#
# Needs: a build in dist/ (npm run build), python3 with selenium, chromium and chromium-driver.
# Usage: scripts/browser-check-standin.sh   (PREVIEW_PORT / STANDIN_PORT override 5173 / 18311;
#        other V7_* variables of the test, e.g. V7_BROWSER_SCREENSHOT, are passed through)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
preview_port="${PREVIEW_PORT:-5173}"
standin_port="${STANDIN_PORT:-18311}"
[ -f "$here/dist/index.html" ] || { echo "browser-check: no dist/index.html; run npm run build" >&2; exit 2; }

standin_pid=""
preview_pid=""
cleanup() {
  [ -n "$preview_pid" ] && kill "$preview_pid" 2>/dev/null && wait "$preview_pid" 2>/dev/null || true
  [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null && wait "$standin_pid" 2>/dev/null || true
}
trap cleanup EXIT

python3 "$here/scripts/standin_api.py" "$standin_port" 2>/dev/null &
standin_pid=$!
# node runs vite directly (not through npx) so that $! is vite's own PID.
(cd "$here" && V7_DEV_BACKEND="http://127.0.0.1:$standin_port" \
  exec node node_modules/vite/bin/vite.js preview --host 127.0.0.1 --port "$preview_port" --strictPort) \
  >/dev/null 2>&1 &
preview_pid=$!

for _ in $(seq 1 50); do
  if curl -fsS "http://127.0.0.1:$preview_port/api/health" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$preview_port/api/health" >/dev/null \
  || { echo "browser-check: vite preview or the stand-in did not come up" >&2; exit 2; }

V7_WEB_URL="http://127.0.0.1:$preview_port" V7_BROWSER_TIMEOUT_S="${V7_BROWSER_TIMEOUT_S:-30}" \
  python3 "$here/test/browser/dashboard_test.py"
