# Shared by the external judges (sourced, not run): a pinned venv under
# target/, and a real `lockstep serve` on a throw-away data directory on
# 127.0.0.1, stopped and removed on exit.

# venv DIR PINS...: creates DIR with exactly PINS installed (again when the
# pins change); afterwards "$DIR/bin/python" has them.
venv() {
  local dir="$1"; shift
  local pins="$*"
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$dir/.pins" 2>/dev/null)" != "$pins" ]; then
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    echo "$pins" >"$dir/.pins"
  fi
}

# start_server BIN NAME [SERVE-ARGS...]: sets DATA (the temporary directory; the data
# directory is "$DATA/data"), TOKEN (the admin token) and URL.
start_server() {
  local bin="$1" name="$2"
  shift 2
  DATA="$(mktemp -d "${TMPDIR:-/tmp}/lockstep-$name-conformance.XXXXXX")"
  TOKEN="conformance-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  local log="$DATA/server.log"
  LOCKSTEP_ADMIN_TOKEN="$TOKEN" LOCKSTEP_LOG=warn "$bin" serve --listen 127.0.0.1:0 --data-dir "$DATA/data" "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  trap 'kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT
  URL=""
  for _ in $(seq 1 600); do # 60 s: a debug build on a loaded machine
    URL="$(sed -n 's/^lockstep: listening on //p' "$log" | head -1)"
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$URL" ] || { echo "server did not start" >&2; cat "$log" >&2; exit 1; }
}
