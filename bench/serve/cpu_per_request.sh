#!/usr/bin/env bash
# Server CPU per request: utime+stime of `fieldfm serve` (from /proc/PID/stat)
# over one wrk run, divided by the requests wrk completed. Less sensitive to a
# busy machine than req/s, so it compares two builds fairly.
#
#   bench/serve/cpu_per_request.sh MODEL SCENARIO [extra serve flags]   e.g. ... /tmp/nffm.bin hit
# Environment: FIELDFM (binary), PORT (18191), CONNECTIONS (32), WRK_THREADS (1), DURATION (6).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
model=${1:?usage: cpu_per_request.sh MODEL SCENARIO [serve flags]}
scenario=${2:?scenario: healthz, hit, miss or batch100}
shift 2
bin=${FIELDFM:-$here/../../build/release/fieldfm}
port=${PORT:-18191}
conns=${CONNECTIONS:-32}
duration=${DURATION:-6}
"$bin" serve --model "$model" --port "$port" --poll-interval 0 "$@" 2>/dev/null &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
out=$(wrk -t"${WRK_THREADS:-1}" -c"$conns" -d"${duration}s" --latency -s "$here/$scenario.lua" "http://127.0.0.1:$port")
t1=$(ticks)
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
hz=$(getconf CLK_TCK)
echo "$scenario: $rps req/s, p99 $p99, server CPU $(echo "($t1 - $t0) * 1000000 / $hz / ($rps * $duration)" | bc) us/request ($(uptime | sed 's/.*load/load/'))"
