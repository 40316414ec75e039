#!/usr/bin/env bash
# Load comparison, in one run on this machine, all on loopback:
#   ferry (release build)  vs  distribution in proxy mode  vs  nginx serving the same files (the ceiling)
# Measures warm 64 MiB blob GET throughput at 1/8/32 clients, warm manifest GET req/s, and
# how many upstream GETs 32 concurrent cold clients cause. Prints a table with ratios.
#
# Needs: docker-registry, skopeo, nginx, wrk, curl, python3 (apt install docker-registry skopeo nginx-light wrk curl).
# Usage: benches/load.sh [seconds-per-run]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry-target}"
for c in docker-registry skopeo nginx wrk curl python3; do
  command -v "$c" >/dev/null || { echo "load.sh: $c is not installed" >&2; exit 1; }
done
cargo build --release --quiet
FERRY="$CARGO_TARGET_DIR/release/ferry"

. benches/lib.sh   # (the script runs from the repository root)

# --- an image with one 64 MiB layer, as an OCI layout --------------------------------
python3 - "$W/layout" <<'PY'
import gzip, hashlib, json, os, sys
d = sys.argv[1]; b = os.path.join(d, "blobs", "sha256"); os.makedirs(b)
def put(data):
    h = hashlib.sha256(data).hexdigest(); open(os.path.join(b, h), "wb").write(data); return "sha256:" + h, len(data)
# A real gzip stream (of random bytes, so ~64 MiB): skopeo would re-compress anything else.
layer = put(gzip.compress(os.urandom(64 << 20), compresslevel=1))
cfg = put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer[0]]}}).encode())
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg[0], "size": cfg[1]},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer[0], "size": layer[1]}]}).encode()
m = put(man)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m[0], "size": m[1],
    "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, open(os.path.join(d, "index.json"), "w"))
open(os.path.join(d, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
open(os.path.join(d, "layer"), "w").write(layer[0])
PY
LAYER=$(cat "$W/layout/layer")
ACCEPT="Accept: application/vnd.oci.image.manifest.v1+json"

# --- the upstream: distribution, with an access log to count GETs --------------------
UP=$(port)
cat > "$W/up.yml" <<YML
version: 0.1
log: {level: info, formatter: text}
storage: {filesystem: {rootdirectory: $W/up-data}}
http: {addr: 127.0.0.1:$UP}
YML
docker-registry serve "$W/up.yml" > "$W/up.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/v2/"
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$W/layout:v1" "docker://127.0.0.1:$UP/bench/app:v1"
upstream_blob_gets() { grep -c "\"GET /v2/bench/app/blobs/$LAYER" "$W/up.log" || true; }

# --- ferry -------------------------------------------------------------------------------
FP=$(port)
cat > "$W/ferry.toml" <<TOML
listen = "127.0.0.1:$FP"
[storage]
path = "$W/ferry-data"
[[upstream]]
name = "up"
url = "http://127.0.0.1:$UP"
default = true
TOML
RUST_LOG=warn "$FERRY" serve --config "$W/ferry.toml" > "$W/ferry.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$FP/v2/"

# --- distribution as a pull-through proxy ----------------------------------------------
DP=$(port)
cat > "$W/proxy.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $W/proxy-data}}
http: {addr: 127.0.0.1:$DP}
proxy: {remoteurl: "http://127.0.0.1:$UP"}
YML
docker-registry serve "$W/proxy.yml" > "$W/proxy.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$DP/v2/"

# --- nginx serving the same bytes as static files (the ceiling) -------------------------
NP=$(port)
mkdir -p "$W/www/v2/bench/app/blobs" "$W/www/v2/bench/app/manifests" "$W/nginx"
cp "$W/layout/blobs/sha256/${LAYER#sha256:}" "$W/www/v2/bench/app/blobs/$LAYER"
MAN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$W/layout/index.json")
cp "$W/layout/blobs/sha256/${MAN#sha256:}" "$W/www/v2/bench/app/manifests/v1"
nginx_conf auto "
  sendfile on; tcp_nopush on;
  default_type application/octet-stream;
  server { listen 127.0.0.1:$NP; root $W/www; }"
nginx -c "$W/nginx/nginx.conf" & PIDS+=($!)
wait_http "http://127.0.0.1:$NP/v2/bench/app/manifests/v1"

# --- cold: 32 concurrent clients, one blob ------------------------------------------------
cold() { # base-url → upstream GETs caused
  local before after
  before=$(upstream_blob_gets)
  local pids=()
  for _ in $(seq 32); do curl -sf -o /dev/null "$1/v2/bench/app/blobs/$LAYER" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || { echo "a cold client of $1 failed" >&2; exit 1; }; done
  sleep 1
  after=$(upstream_blob_gets)
  echo $((after - before))
}
COLD_FERRY=$(cold "http://127.0.0.1:$FP")
COLD_DIST=$(cold "http://127.0.0.1:$DP")

# --- warm: wrk ----------------------------------------------------------------------------
# wrk prints "Transfer/sec: 1.23GB" and "Requests/sec: 123.4"; normalise to MiB/s and req/s.
wrk_run() { # conns url [header] → "MiB/s req/s"
  local c=$1 url=$2 hdr=${3:-} t=$(( $1 < 2 ? 1 : 2 ))
  local out
  if [ -n "$hdr" ]; then out=$(wrk -t"$t" -c"$c" -d"${DUR}s" -H "$hdr" "$url"); else out=$(wrk -t"$t" -c"$c" -d"${DUR}s" "$url"); fi
  echo "$out" | python3 -c '
import re, sys
t = sys.stdin.read()
m = re.search(r"Transfer/sec:\s*([\d.]+)(\w+)", t); r = re.search(r"Requests/sec:\s*([\d.]+)", t)
unit = {"B": 1/2**20, "KB": 1/1024, "MB": 1, "GB": 1024, "TB": 1024**2}
print("%.1f %.1f" % (float(m.group(1)) * unit[m.group(2)], float(r.group(1))))'
}
# Warm each peer's cache first (distribution fetches on first request).
for p in "$FP" "$DP" "$NP"; do curl -sf -o /dev/null "http://127.0.0.1:$p/v2/bench/app/blobs/$LAYER"; curl -sf -o /dev/null -H "$ACCEPT" "http://127.0.0.1:$p/v2/bench/app/manifests/v1"; done

declare -A R
for c in 1 8 32; do
  for peer in ferry:$FP dist:$DP nginx:$NP; do
    R[blob_${peer%%:*}_$c]=$(wrk_run "$c" "http://127.0.0.1:${peer#*:}/v2/bench/app/blobs/$LAYER" | cut -d' ' -f1)
  done
done
for peer in ferry:$FP dist:$DP nginx:$NP; do
  R[man_${peer%%:*}]=$(wrk_run 32 "http://127.0.0.1:${peer#*:}/v2/bench/app/manifests/v1" "$ACCEPT" | cut -d' ' -f2)
done

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('%.2f' % (a/b) if b else 'n/a')" "$1" "$2"; }
echo
echo "ferry load comparison ($(nproc) cores, ${DUR}s per run, $(date -u +%Y-%m-%d))"
echo
echo "| measure | ferry | distribution proxy | nginx static | ferry/distribution | ferry/nginx |"
echo "|---|---|---|---|---|---|"
for c in 1 8 32; do
  f=${R[blob_ferry_$c]} d=${R[blob_dist_$c]} n=${R[blob_nginx_$c]}
  echo "| warm 64 MiB blob GET, $c client(s), MiB/s | $f | $d | $n | $(ratio "$f" "$d") | $(ratio "$f" "$n") |"
done
f=${R[man_ferry]} d=${R[man_dist]} n=${R[man_nginx]}
echo "| warm manifest GET, 32 connections, req/s | $f | $d | $n | $(ratio "$f" "$d") | $(ratio "$f" "$n") |"
echo "| upstream GETs for 32 concurrent cold clients | $COLD_FERRY | $COLD_DIST | n/a | $(ratio "$COLD_FERRY" "$COLD_DIST") | n/a |"
