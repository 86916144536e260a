#!/bin/sh
# Entrypoint of the registry-free web image (web/Dockerfile.registry-free), which runs Debian's nginx
# instead of the nginx:alpine image and so has no /docker-entrypoint.sh. It does the same two
# steps that image's entrypoint does for web/Dockerfile:
#   1. V7_RESOLVER from the container's own /etc/resolv.conf when unset, by sourcing the very
#      script the production image uses (docker-entrypoint.d/15-v7-resolver.envsh);
#   2. the template /etc/nginx/templates/nginx.conf.template -> /tmp/nginx.conf, replacing only
#      ${V7_BACKEND_ADDR} and ${V7_RESOLVER} (nginx's own $variables are left alone).
# Then it runs the command (nginx by default). Runs as the non-root user nginx: every path it and
# nginx write is under /tmp.
set -eu

. /docker-entrypoint.d/15-v7-resolver.envsh
if [ -z "${V7_RESOLVER:-}" ]; then
  # No nameserver at all (e.g. --network none): nginx still starts and serves the dashboard;
  # /api/ answers 502 because backend's name cannot be looked up.
  echo "v7-web: no nameserver in /etc/resolv.conf and V7_RESOLVER unset; using 127.0.0.1" >&2
  V7_RESOLVER=127.0.0.1
fi
V7_BACKEND_ADDR=${V7_BACKEND_ADDR:-backend:3000}
export V7_RESOLVER V7_BACKEND_ADDR

envsubst '${V7_BACKEND_ADDR} ${V7_RESOLVER}' < /etc/nginx/templates/nginx.conf.template > /tmp/nginx.conf
echo "v7-web: /tmp/nginx.conf with V7_BACKEND_ADDR=$V7_BACKEND_ADDR V7_RESOLVER=$V7_RESOLVER" >&2

exec "$@"
