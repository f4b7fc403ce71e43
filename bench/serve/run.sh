#!/usr/bin/env bash
# Load test of `fieldfm serve` with wrk: cache-miss singles, cache-hit singles,
# batches of 100. Each scenario gets a fresh server so its metrics are its own.
#
#   bench/serve/run.sh MODEL [DURATION]        e.g. bench/serve/run.sh demo/model.fieldfm 15s
#
# Environment: FIELDFM (binary, default build/release/fieldfm), PORT (18181),
# CONNECTIONS (32), WRK_THREADS (1), SCENARIOS ("healthz miss hit batch100"),
# SERVE_ARGS (extra flags for fieldfm serve).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
model=${1:?usage: bench/serve/run.sh MODEL [DURATION]}
duration=${2:-10s}
bin=${FIELDFM:-$root/build/release/fieldfm}
port=${PORT:-18181}
conns=${CONNECTIONS:-32}
wrk_threads=${WRK_THREADS:-1}
scenarios=${SCENARIOS:-healthz miss hit batch100}

# wrk is a bench tool, not a build dependency: installed here, on demand.
if ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk curl
fi
[ -x "$bin" ] || { echo "no fieldfm binary at $bin (build it or set FIELDFM)" >&2; exit 1; }

log=$(mktemp /tmp/fieldfm-serve-bench.XXXXXX)
server_pid=
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  local rc=0
  wait "$server_pid" || rc=$?
  server_pid=
  [ "$rc" -eq 0 ] || { echo "fieldfm serve exited with $rc; log: $log" >&2; exit 1; }
}
trap stop_server EXIT

start_server() {  # extra serve flags...
  # --threads: only builds before the asynchronous batcher (FIELDFM=older binary) wait for
  # the model on pool threads: one per connection lets every open batch fill there.
  "$bin" serve --model "$model" --port "$port" --threads $((conns + 4)) --poll-interval 0 \
    ${SERVE_ARGS:-} "$@" 2>>"$log" &
  server_pid=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "server not ready after 30 s; log: $log" >&2
  exit 1
}

summary() {  # what the server saw: requests, batching, cache
  curl -s "http://127.0.0.1:$port/metrics" |
    grep -E '^fieldfm_(requests_total\{path="/v1/predict"|predict_calls_total|predict_rows_total|cache_hits_total|cache_misses_total)' |
    sed 's/^/    /'
}

echo "fieldfm serve bench: model=$model duration=$duration connections=$conns wrk_threads=$wrk_threads cores=$(nproc) serve_args='${SERVE_ARGS:-}'"
for scenario in $scenarios; do
  case "$scenario" in
    healthz) start_server ;;
    miss) start_server ;;
    hit) start_server ;;  # the first request fills the one entry every later one hits
    batch100) start_server --cache-entries 0 ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
  echo "== $scenario  ($(uptime | sed 's/.*load/load/'))"
  wrk -t"$wrk_threads" -c"$conns" -d"$duration" --latency -s "$here/$scenario.lua" "http://127.0.0.1:$port" |
    grep -E 'Requests/sec|Latency|50%|90%|99%|Socket errors|Non-2xx' | sed 's/^/    /'
  summary
  stop_server
done
