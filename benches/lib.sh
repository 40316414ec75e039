# Shared by the load scripts (sourced): a work directory removed on exit (kept with
# KEEP=1), background processes stopped on exit, a free loopback port, and waiting
# for an HTTP endpoint to answer.
W=$(mktemp -d)
chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap 'echo "kept $W"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
