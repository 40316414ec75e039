#!/usr/bin/env bash
# S3 backend load figures, in one run on this machine, all on loopback:
#   a ferry node on local disk  vs  a ferry node streaming from S3 (s3s-fs)
# Measures warm 64 MiB blob GET throughput at 1/8/32 clients on both, the rate at which
# a node in redirect mode answers blob hits with presigned 307s, and, as the ceiling,
# the S3 server serving the object directly (GET of a presigned URL).
#
# Needs: docker-registry, skopeo, wrk, curl, python3, and s3s-fs (scripts/test.sh
# installs it into ~/.cache/ferry-tools). Usage: benches/s3.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry-target}"
S3S="${FERRY_S3S_FS:-$HOME/.cache/ferry-tools/bin/s3s-fs}"
for c in docker-registry skopeo wrk curl python3 "$S3S"; do
  command -v "$c" >/dev/null || { echo "s3.sh: $c is not installed" >&2; exit 1; }
done
cargo build --release --quiet
FERRY="$CARGO_TARGET_DIR/release/ferry"

. benches/lib.sh

# --- the S3 server ------------------------------------------------------------------------
SP=$(port)
mkdir -p "$W/s3/ferry"
"$S3S" --host 127.0.0.1 --port "$SP" --access-key bench-access --secret-key bench-secret-key "$W/s3" > "$W/s3.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$SP") 2>/dev/null && break; sleep 0.1; done

node() { # name storage-table → port
  local p; p=$(port)
  cat > "$W/$1.toml" <<TOML
listen = "127.0.0.1:$p"
[storage]
path = "$W/$1-data"
$2
[[upstream]]
name = "up"
url = "http://127.0.0.1:$UP"
default = true
TOML
  RUST_LOG=warn "$FERRY" serve --config "$W/$1.toml" > "$W/$1.log" 2>&1 & PIDS+=($!)
  wait_http "http://127.0.0.1:$p/v2/"
  echo "$p"
}
S3TABLE="backend = \"s3\"
bucket = \"ferry\"
endpoint = \"http://127.0.0.1:$SP\"
path_style = true
access_key_id = \"bench-access\"
secret_access_key = \"bench-secret-key\""
FS=$(node fs "")
S3=$(node s3 "$S3TABLE
prefix = \"stream\"")
RD=$(node redirect "$S3TABLE
prefix = \"redirect\"
redirect = true")

BLOB="/v2/bench/app/blobs/$LAYER"
for p in "$FS" "$S3" "$RD"; do curl -sfL -o /dev/null "http://127.0.0.1:$p$BLOB"; done
sleep 1
PRESIGNED=$(curl -sf -o /dev/null -w '%{redirect_url}' "http://127.0.0.1:$RD$BLOB")
[ -n "$PRESIGNED" ] || { echo "redirect node did not redirect" >&2; exit 1; }

declare -A R
for c in 1 8 32; do
  R[fs_$c]=$(wrk_run "$c" "http://127.0.0.1:$FS$BLOB" | cut -d' ' -f1)
  R[s3_$c]=$(wrk_run "$c" "http://127.0.0.1:$S3$BLOB" | cut -d' ' -f1)
  R[direct_$c]=$(wrk_run "$c" "$PRESIGNED" | cut -d' ' -f1)
done
R[redirect]=$(wrk_run 32 "http://127.0.0.1:$RD$BLOB" | cut -d' ' -f2)

echo
echo "ferry S3 backend ($(nproc) cores, ${DUR}s per run, $(date -u +%Y-%m-%d)); S3 server: s3s-fs on loopback"
echo
echo "| measure | ferry on fs | ferry streaming from S3 | S3 server direct | S3/fs | S3/direct |"
echo "|---|---|---|---|---|---|"
for c in 1 8 32; do
  f=${R[fs_$c]} s=${R[s3_$c]} d=${R[direct_$c]}
  echo "| warm 64 MiB blob GET, $c client(s), MiB/s | $f | $s | $d | $(ratio "$s" "$f") | $(ratio "$s" "$d") |"
done
echo
echo "| measure | req/s |"
echo "|---|---|"
echo "| blob hit answered with a presigned 307 (redirect = true), 32 connections | ${R[redirect]} |"
