# Shared by the load scripts: a work dir, helpers, a 64 MiB-layer image pushed to a
# distribution upstream (whose access log counts GETs), and wrk output parsing.
# Sourced, not run. Sets W, UP, LAYER, ACCEPT, PIDS.

W=$(mktemp -d)
chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap "echo kept $W" EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

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

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('%.2f' % (a/b) if b else 'n/a')" "$1" "$2"; }

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
