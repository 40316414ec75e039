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
# nginx_conf WORKERS HTTP_LINES: $W/nginx/nginx.conf for nginx in the foreground as root,
# access logging off, its pid, error log and temp files under $W/nginx, and HTTP_LINES
# (servers and settings) inside http {}.
nginx_conf() {
  mkdir -p "$W/nginx"
  cat > "$W/nginx/nginx.conf" <<CONF
user root;
worker_processes $1;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $W/nginx; proxy_temp_path $W/nginx; fastcgi_temp_path $W/nginx; uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
$2
}
CONF
}
