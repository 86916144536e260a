#!/usr/bin/env python3
"""A STAND-IN for a registry's token service (what auth.docker.io is to Docker Hub, and
ghcr.io/token to GHCR), for the pull tests: those services cannot be reached here, and Debian
has no package of one. docker-registry itself is real; this only hands out the tokens it checks.

    tokenserver.py --key KEY.pem --cert CERT.pem --issuer ISSUER [--port 0]

Prints `PORT <n>` once listening on 127.0.0.1. Answers every `GET /token?service=...&scope=...`
(anonymous, as Docker Hub does for public images) with a JWT granting the asked actions, signed
RS256 with KEY (by openssl) and carrying CERT in its `x5c` header, which docker-registry checks
against its `auth.token.rootcertbundle`. `GET /__log` gives JSON {"tokens": n, "scopes": [...]}.
Claims as docker/distribution's token auth reads them: iss, sub, aud (the service), exp, nbf,
iat, jti, access.
"""

import argparse
import base64
import json
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
LOG = {"tokens": 0, "scopes": []}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cert_der_b64(path):
    pem = open(path).read()
    body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return "".join(body.split())  # x5c is standard base64 of the DER, which PEM's body is


def sign(key, data):
    out = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=data, capture_output=True, check=True)
    return out.stdout


def token(args, service, scopes):
    now = int(time.time())
    access = []
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) >= 3:
            access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")})
    header = {"typ": "JWT", "alg": "RS256", "x5c": [cert_der_b64(args.cert)]}
    claims = {"iss": args.issuer, "sub": "", "aud": service, "exp": now + 600, "nbf": now - 10, "iat": now,
              "jti": "v7test-%d-%d" % (now, LOG["tokens"]), "access": access}
    signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    return signing_input.decode() + "." + b64url(sign(args.key, signing_input))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/__log":
            with LOCK:
                return self.reply(200, dict(LOG))
        if url.path != "/token":
            return self.reply(404, {"error": "not found"})
        q = urllib.parse.parse_qs(url.query)
        scopes = [s for v in q.get("scope", []) for s in v.split(" ") if s]
        with LOCK:
            LOG["tokens"] += 1
            LOG["scopes"].extend(scopes)
        t = token(ARGS, q.get("service", [""])[0], scopes)
        self.reply(200, {"token": t, "access_token": t, "expires_in": 600,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--port", type=int, default=0)
    ARGS = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()
