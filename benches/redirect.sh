#!/usr/bin/env bash
# Redirector load figures, in one run on this machine, all on loopback:
#   ferry redirect (bench-profile build)  vs  nginx `return 307` (the ceiling)
# 1. peak req/s with wrk (32 connections) for a blob GET that each answers with a 307,
#    best of ROUNDS alternating rounds;
# 2. latency at fixed rates (half and an eighth of nginx's peak) with benches/openloop.rs:
#    open loop over 32 keep-alive connections, each request timed from when it was due
#    (no coordinated omission), the sender spinning on the clock so the rate holds to
#    the microsecond: p50/p99/p99.9/max, and how late the client itself sent.
#
# With 2 or more CPUs, the servers are pinned to CPU 0 (one nginx worker, one ferry
# worker) and the load generators to the others, so a server never competes with
# its own client for a core; with 1 CPU everything shares it (and openloop's spinning
# then steals from the server: its figures are not meaningful there).
#
# Needs: nginx, wrk, curl, python3 (apt install nginx-light wrk curl); oha, if on PATH
# (cargo install oha --root ~/.cache/ferry-tools), adds a cross-check row.
# Usage: benches/redirect.sh [seconds-per-run] [rounds]   (default 10 3)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
ROUNDS="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry-target}"
export PATH="$PATH:$HOME/.cache/ferry-tools/bin"
for c in nginx wrk curl python3 taskset; do
  command -v "$c" >/dev/null || { echo "redirect.sh: $c is not installed" >&2; exit 1; }
done
if [ "$(nproc)" -ge 2 ]; then
  SERVER=(taskset -c 0) CLIENT=(taskset -c "1-$(($(nproc) - 1))") WORKERS=1 THREADS=$(($(nproc) - 1))
else
  SERVER=() CLIENT=() WORKERS=1 THREADS=1
fi
cargo build --profile bench --bin ferry --quiet
FERRY="$CARGO_TARGET_DIR/release/ferry"
OPENLOOP=$(cargo bench --bench openloop --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p')
[ -x "$OPENLOOP" ] || { echo "redirect.sh: could not build benches/openloop.rs" >&2; exit 1; }

. benches/lib.sh   # (the script runs from the repository root)

NODE=$(port) NGX=$(port) RED=$(port)
BLOB="/v2/library/alpine/blobs/sha256:$(printf 'ab%.0s' $(seq 32))"

# nginx: a "node" that is always ready, and the same redirect as a static rule.
nginx_conf "$WORKERS" "
  keepalive_requests 100000000;   # as ferry: never close a busy keep-alive connection
  server { listen 127.0.0.1:$NODE; location = /readyz { return 200 \"ok\"; } }
  server { listen 127.0.0.1:$NGX; location / { return 307 http://127.0.0.1:$NODE\$request_uri; } }"
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
# openloop at a fixed total rate over 32 connections; its JSON goes to file $3.
latency() {
  "${CLIENT[@]}" "$OPENLOOP" --url "$1" --rate "$2" --duration "$DUR" --warmup 2 --connections 32 --expect 307 > "$3"
}
FS=() NS=()
for _ in $(seq "$ROUNDS"); do
  FS+=("$(peak "http://127.0.0.1:$RED$BLOB")")
  NS+=("$(peak "http://127.0.0.1:$NGX$BLOB")")
done
PF=$(best "${FS[@]}") PN=$(best "${NS[@]}")
HALF=$(python3 -c "import sys; print(max(1, int(float(sys.argv[1]) / 2)))" "$PN")
LOW=$((HALF / 4))
mkdir -p "$W/lat"
for i in $(seq "$ROUNDS"); do
  for rate in "$HALF" "$LOW"; do
    latency "http://127.0.0.1:$RED$BLOB" "$rate" "$W/lat/ferry-$rate-$i.json"
    latency "http://127.0.0.1:$NGX$BLOB" "$rate" "$W/lat/nginx-$rate-$i.json"
  done
done

# Cross-check with oha where it is installed (cargo install oha): its default
# measure at a fixed rate is the response time from send, as openloop's service_*.
OHA_ROW=""
if command -v oha >/dev/null; then
  oha99() {
    "${CLIENT[@]}" oha -z "${DUR}s" -c 32 -q "$HALF" --redirect 0 --no-tui --output-format json "$1" |
      python3 -c 'import json, sys; print("%.3f" % (json.load(sys.stdin)["latencyPercentiles"]["p99"] * 1000))'
  }
  O_F=$(oha99 "http://127.0.0.1:$RED$BLOB") O_N=$(oha99 "http://127.0.0.1:$NGX$BLOB")
  OHA_ROW="| p99 response time at $HALF req/s as oha -q reports it (one run), ms | $O_F | $O_N | $(python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$O_F" "$O_N") |"
fi

echo
echo "ferry redirector vs nginx return 307 ($(nproc) cores, server pinned: ${SERVER[*]:-no}, ${DUR}s per run, $(date -u +%Y-%m-%d))"
echo "peak rounds: ferry ${FS[*]}; nginx ${NS[*]}"
echo
python3 - "$W/lat" "$HALF" "$LOW" "$ROUNDS" "$PF" "$PN" "$OHA_ROW" <<'PY'
import json, statistics, sys
d, half, low, rounds, pf, pn = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
def runs(server, rate):
    out = [json.load(open(f"{d}/{server}-{rate}-{i}.json")) for i in range(1, rounds + 1)]
    for r in out:
        if r["errors"] or r["unexpected_status"] or r["completed"] < 0.99 * r["sent"]:
            sys.exit(f"openloop run failed: {r}")
    return out
def cell(rs, key):
    v = sorted(r[key] / 1000 for r in rs)
    return "%.3f (%.3f–%.3f)" % (statistics.median(v), v[0], v[-1]) if len(v) > 1 else "%.3f" % v[0]
def ratio(a, b, key):
    return "%.2f" % (statistics.median(r[key] for r in a) / statistics.median(r[key] for r in b))
print("| measure | ferry redirect | nginx return 307 | ferry/nginx |")
print("|---|---|---|---|")
print(f"| peak blob redirects/s, 32 connections (wrk, best of {rounds}) | {pf:.0f} | {pn:.0f} | {pf / pn:.2f} |")
rows = [
    ("p50 response time", "service_p50_us"),
    ("p99 response time", "service_p99_us"),
    ("p99 latency from due time", "latency_p99_us"),
    ("p99.9 latency from due time", "latency_p999_us"),
    ("client's own send lag, p99", "send_lag_p99_us"),
    ("client's own longest stall", "client_stall_max_us"),
]
for rate, what in ((half, "half nginx's peak"), (low, "an eighth of it")):
    f, n = runs("ferry", rate), runs("nginx", rate)
    for label, key in rows:
        print(f"| {label} at {rate} req/s ({what}), ms | {cell(f, key)} | {cell(n, key)} | {ratio(f, n, key)} |")
if len(sys.argv) > 7 and sys.argv[7]:
    print(sys.argv[7])
print()
print(f"Cells: median (lowest–highest) of {rounds} alternating runs. Response time is from")
print("sending a request to its whole response (what wrk, and oha without latency correction,")
print("report); latency from due time also charges any wait before sending (all connections")
print("busy, or the client not running), so machine stalls count against both servers.")
PY
