#!/usr/bin/env bash
# Redirector load figures, in one run on this machine, all on loopback:
#   ferry redirect (bench-profile build)  vs  nginx `return 307` (the ceiling)
# 1. peak req/s with wrk (32 connections) for a blob GET that each answers with a 307;
# 2. latency at half of nginx's peak rate with hey (fixed rate, 32 workers): p50/p99.
#
# Needs: nginx, wrk, hey, curl, python3 (apt install nginx-light wrk hey curl).
# Usage: benches/redirect.sh [seconds-per-run]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry-target}"
for c in nginx wrk hey curl python3; do
  command -v "$c" >/dev/null || { echo "redirect.sh: $c is not installed" >&2; exit 1; }
done
cargo build --profile bench --bin ferry --quiet
FERRY="$CARGO_TARGET_DIR/release/ferry"

W=$(mktemp -d)
chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

NODE=$(port) NGX=$(port) RED=$(port)
BLOB="/v2/library/alpine/blobs/sha256:$(printf 'ab%.0s' $(seq 32))"

# nginx: a "node" that is always ready, and the same redirect as a static rule.
mkdir -p "$W/nginx"
cat > "$W/nginx/nginx.conf" <<CONF
user root;
worker_processes auto;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $W/nginx; proxy_temp_path $W/nginx; fastcgi_temp_path $W/nginx; uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
  server { listen 127.0.0.1:$NODE; location = /readyz { return 200 "ok"; } }
  server { listen 127.0.0.1:$NGX; location / { return 307 http://127.0.0.1:$NODE\$request_uri; } }
}
CONF
nginx -c "$W/nginx/nginx.conf" & PIDS+=($!)
wait_http "http://127.0.0.1:$NGX/"

cat > "$W/redirect.toml" <<TOML
listen = "127.0.0.1:$RED"
upstream = "http://127.0.0.1:9"
[[region]]
name = "local"
cidrs = ["127.0.0.0/8"]
[[node]]
url = "http://127.0.0.1:$NODE"
region = "local"
TOML
RUST_LOG=warn "$FERRY" redirect --config "$W/redirect.toml" > "$W/redirect.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$RED/v2/"
sleep 2.5 # first health probe
loc=$(curl -s -o /dev/null -w '%{redirect_url}' "http://127.0.0.1:$RED$BLOB")
[ "$loc" = "http://127.0.0.1:$NODE$BLOB" ] || { echo "redirector sent $loc" >&2; exit 1; }

peak() { wrk -t2 -c32 -d"${DUR}s" "$1" | python3 -c 'import re,sys; print(re.search(r"Requests/sec:\s*([\d.]+)", sys.stdin.read()).group(1))'; }
# hey: fixed total rate split over 32 workers; prints "p50 p99" in ms.
latency() {
  hey -z "${DUR}s" -c 32 -q "$2" -disable-redirects "$1" | python3 -c '
import re, sys
t = sys.stdin.read()
p = dict(re.findall(r"(\d+)% in ([\d.]+) secs", t))
print("%.3f %.3f" % (float(p["50"]) * 1000, float(p["99"]) * 1000))'
}
PF=$(peak "http://127.0.0.1:$RED$BLOB")
PN=$(peak "http://127.0.0.1:$NGX$BLOB")
HALF=$(python3 -c "import sys; print(max(1, int(float(sys.argv[1]) / 2 / 32)))" "$PN")
read -r F50 F99 <<<"$(latency "http://127.0.0.1:$RED$BLOB" "$HALF")"
read -r N50 N99 <<<"$(latency "http://127.0.0.1:$NGX$BLOB" "$HALF")"
ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }

echo
echo "ferry redirector vs nginx return 307 ($(nproc) cores, ${DUR}s per run, $(date -u +%Y-%m-%d))"
echo
echo "| measure | ferry redirect | nginx return 307 | ferry/nginx |"
echo "|---|---|---|---|"
echo "| peak blob redirects/s, 32 connections (wrk) | $PF | $PN | $(ratio "$PF" "$PN") |"
echo "| p50 latency at $((HALF * 32)) req/s (half nginx's peak), ms | $F50 | $N50 | $(ratio "$F50" "$N50") |"
echo "| p99 latency at $((HALF * 32)) req/s, ms | $F99 | $N99 | $(ratio "$F99" "$N99") |"
