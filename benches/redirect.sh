#!/usr/bin/env bash
# Redirector load figures, in one run on this machine, all on loopback:
#   ferry redirect (bench-profile build)  vs  nginx `return 307` (the ceiling)
# 1. peak req/s with wrk (32 connections) for a blob GET that each answers with a 307,
#    best of ROUNDS alternating rounds;
# 2. latency at half of nginx's peak rate with oha (open loop at a fixed rate, with
#    latency correction, so a stalled response counts from when it was due): p50/p99.
#
# With 2 or more CPUs, the servers are pinned to CPU 0 (one nginx worker, one ferry
# worker) and the load generators to the others, so a server never competes with
# its own client for a core; with 1 CPU everything shares it.
#
# Needs: nginx, wrk, curl, python3 (apt install nginx-light wrk curl) and oha
# (cargo install oha --root ~/.cache/ferry-tools).
# Usage: benches/redirect.sh [seconds-per-run] [rounds]   (default 10 3)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
ROUNDS="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry-target}"
export PATH="$PATH:$HOME/.cache/ferry-tools/bin"
for c in nginx wrk oha curl python3 taskset; do
  command -v "$c" >/dev/null || { echo "redirect.sh: $c is not installed" >&2; exit 1; }
done
if [ "$(nproc)" -ge 2 ]; then
  SERVER=(taskset -c 0) CLIENT=(taskset -c "1-$(($(nproc) - 1))") WORKERS=1 THREADS=$(($(nproc) - 1))
else
  SERVER=() CLIENT=() WORKERS=1 THREADS=1
fi
cargo build --profile bench --bin ferry --quiet
FERRY="$CARGO_TARGET_DIR/release/ferry"

. benches/lib.sh   # (the script runs from the repository root)

NODE=$(port) NGX=$(port) RED=$(port)
BLOB="/v2/library/alpine/blobs/sha256:$(printf 'ab%.0s' $(seq 32))"

# nginx: a "node" that is always ready, and the same redirect as a static rule.
mkdir -p "$W/nginx"
cat > "$W/nginx/nginx.conf" <<CONF
user root;
worker_processes $WORKERS;
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
"${SERVER[@]}" nginx -c "$W/nginx/nginx.conf" & PIDS+=($!)
wait_http "http://127.0.0.1:$NGX/"

cat > "$W/redirect.toml" <<TOML
listen = "127.0.0.1:$RED"
upstream = "http://127.0.0.1:9"
[log]
access_log = false     # as nginx's access_log off
[[region]]
name = "local"
cidrs = ["127.0.0.0/8"]
[[node]]
url = "http://127.0.0.1:$NODE"
region = "local"
TOML
RUST_LOG=warn "${SERVER[@]}" "$FERRY" redirect --config "$W/redirect.toml" > "$W/redirect.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$RED/v2/"
sleep 2.5 # first health probe
loc=$(curl -s -o /dev/null -w '%{redirect_url}' "http://127.0.0.1:$RED$BLOB")
[ "$loc" = "http://127.0.0.1:$NODE$BLOB" ] || { echo "redirector sent $loc" >&2; exit 1; }

peak() { "${CLIENT[@]}" wrk -t"$THREADS" -c32 -d"${DUR}s" "$1" | python3 -c 'import re,sys; print(re.search(r"Requests/sec:\s*([\d.]+)", sys.stdin.read()).group(1))'; }
best() { python3 -c "import sys; print(max(float(x) for x in sys.argv[1:]))" "$@"; }
# oha: a fixed total rate over 32 connections; prints "p50 p99" in ms.
latency() {
  "${CLIENT[@]}" oha -z "${DUR}s" -c 32 -q "$2" --latency-correction --redirect 0 --no-tui --output-format json "$1" | python3 -c '
import json, sys
p = json.load(sys.stdin)["latencyPercentiles"]
print("%.3f %.3f" % (p["p50"] * 1000, p["p99"] * 1000))'
}
FS=() NS=()
for _ in $(seq "$ROUNDS"); do
  FS+=("$(peak "http://127.0.0.1:$RED$BLOB")")
  NS+=("$(peak "http://127.0.0.1:$NGX$BLOB")")
done
PF=$(best "${FS[@]}") PN=$(best "${NS[@]}")
HALF=$(python3 -c "import sys; print(max(1, int(float(sys.argv[1]) / 2)))" "$PN")
read -r F50 F99 <<<"$(latency "http://127.0.0.1:$RED$BLOB" "$HALF")"
read -r N50 N99 <<<"$(latency "http://127.0.0.1:$NGX$BLOB" "$HALF")"
# The same at an eighth of the peak: the floor this machine's scheduler and client set.
LOW=$((HALF / 4))
read -r FL50 FL99 <<<"$(latency "http://127.0.0.1:$RED$BLOB" "$LOW")"
read -r NL50 NL99 <<<"$(latency "http://127.0.0.1:$NGX$BLOB" "$LOW")"
ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }

echo
echo "ferry redirector vs nginx return 307 ($(nproc) cores, server pinned: ${SERVER[*]:-no}, ${DUR}s per run, $(date -u +%Y-%m-%d))"
echo "peak rounds: ferry ${FS[*]}; nginx ${NS[*]}"
echo
echo "| measure | ferry redirect | nginx return 307 | ferry/nginx |"
echo "|---|---|---|---|"
echo "| peak blob redirects/s, 32 connections (wrk, best of $ROUNDS) | $PF | $PN | $(ratio "$PF" "$PN") |"
echo "| p50 latency at $HALF req/s (half nginx's peak, oha), ms | $F50 | $N50 | $(ratio "$F50" "$N50") |"
echo "| p99 latency at $HALF req/s, ms | $F99 | $N99 | $(ratio "$F99" "$N99") |"
echo "| p50 latency at $LOW req/s (an eighth of the peak), ms | $FL50 | $NL50 | $(ratio "$FL50" "$NL50") |"
echo "| p99 latency at $LOW req/s, ms | $FL99 | $NL99 | $(ratio "$FL99" "$NL99") |"
