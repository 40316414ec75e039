#!/usr/bin/env bash
# Promotion throughput: `ferry sync` into a node's store and `ferry export` to a
# bundle, against skopeo copying the same image from the same registry into an OCI
# layout directory and an oci-archive. All on loopback from Debian's distribution.
#
#   benches/promote.sh [LAYER_MIB] [LAYERS]     (default: 64 MiB × 4)
#
# Needs docker-registry, skopeo and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
MIB=${1:-64}
LAYERS=${2:-4}
FERRY=${FERRY:-${CARGO_TARGET_DIR:-$HOME/.cache/ferry-target}/release/ferry}
[ -x "$FERRY" ] || { echo "build first: cargo build --release" >&2; exit 1; }

REG=$(port)
cat > "$W/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $W/registry}}
http: {addr: 127.0.0.1:$REG}
YML
docker-registry serve "$W/registry.yml" >/dev/null 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$REG/v2/"

# An image of incompressible layers, pushed with skopeo from a layout made here.
python3 - "$W/src" "$MIB" "$LAYERS" <<'PY'
import hashlib, json, os, sys
out, mib, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blobs = os.path.join(out, "blobs/sha256"); os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d), "wb").write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
layers = [dict(put(os.urandom(mib << 20)), mediaType="application/vnd.oci.image.layer.v1.tar") for _ in range(n)]
config = dict(put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode()), mediaType="application/vnd.oci.image.config.v1+json")
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": layers}).encode()
m = dict(put(manifest), mediaType="application/vnd.oci.image.manifest.v1+json", annotations={"org.opencontainers.image.ref.name": "v1"})
open(os.path.join(out, "index.json"), "w").write(json.dumps({"schemaVersion": 2, "manifests": [m]}))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
# skopeo may rewrite the manifest (it compresses tar layers): ask the registry.
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$W/src:v1" "docker://127.0.0.1:$REG/bench/app:v1"
DIGEST=$(curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://127.0.0.1:$REG/v2/bench/app/manifests/v1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
[ -n "$DIGEST" ] || { echo "no digest for bench/app:v1" >&2; exit 1; }
TOTAL=$((MIB * LAYERS))

cat > "$W/p.yaml" <<YML
registries: [{name: "http://127.0.0.1:$REG", src: true}]
images:
  - name: bench/app
    dmap: {"$DIGEST": [v1]}
YML
cat > "$W/node.toml" <<TOML
listen = "127.0.0.1:$(port)"
[storage]
path = "$W/node"
[[upstream]]
name = "bench"
url = "http://127.0.0.1:$REG"
default = true
TOML

secs() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$W/last.log" 2>&1 || { echo "failed: $*" >&2; cat "$W/last.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
rate() { echo "scale=1; $TOTAL / $1" | bc -l; }
row() { printf '%-44s %7.2f s %8s MiB/s\n' "$1" "$2" "$(rate "$2")"; }

echo "image: $LAYERS layers × $MIB MiB = $TOTAL MiB, distribution on loopback"
t=$(secs "$FERRY" sync --manifest "$W/p.yaml" --config "$W/node.toml"); row "ferry sync → node store (fs)" "$t"; FS=$t
t=$(secs "$FERRY" sync --manifest "$W/p.yaml" --config "$W/node.toml")
printf '%-44s %7.2f s %8s\n' "ferry sync again (plans, copies nothing)" "$t" "-"
t=$(secs skopeo --insecure-policy copy -q --src-tls-verify=false "docker://127.0.0.1:$REG/bench/app:v1" "oci:$W/skopeo:v1"); row "skopeo copy → oci: layout" "$t"; SK=$t
t=$(secs "$FERRY" export --manifest "$W/p.yaml" -o "$W/bundle.tar"); row "ferry export → bundle.tar" "$t"; EX=$t
t=$(secs skopeo --insecure-policy copy -q --src-tls-verify=false "docker://127.0.0.1:$REG/bench/app:v1" "oci-archive:$W/skopeo.tar:v1"); row "skopeo copy → oci-archive:" "$t"; SKA=$t
echo "ratios (time, skopeo / ferry): sync vs oci: $(echo "scale=2; $SK / $FS" | bc -l), export vs oci-archive: $(echo "scale=2; $SKA / $EX" | bc -l)"
