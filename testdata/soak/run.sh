#!/usr/bin/env bash
# Soak: call churn against a freshly started server for SOAK_MINUTES (default
# 30), sampling the server's goroutines, heap and RSS from /metrics between
# rounds. Fails if they grow: after a warm-up, the last fifth's mean may not
# exceed the second fifth's by more than 20 % (heap, RSS) or 50 goroutines.
# Not run by CI (too long); `make soak`.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin/voxbridge}
MINUTES=${SOAK_MINUTES:-30}
SIP_PORT=${SIP_PORT:-27060}
HTTP_PORT=${HTTP_PORT:-27080}
FLOWS_DIR=${FLOWS_DIR:-testdata/flows}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/voxbridge
work=$(mktemp -d)
"$BIN" serve --sip-addr "127.0.0.1:$SIP_PORT" --http-addr "127.0.0.1:$HTTP_PORT" --db "$work/vb.db" \
  --rtp-ports 50000-59999 --flows-dir "$FLOWS_DIR" --default-flow echo --sip-anonymous '*' \
  --log-level warn >"$work/server.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
sample() {
  curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" | awk '
    /^go_goroutines / {g=$2} /^go_memstats_heap_alloc_bytes / {h=$2} /^process_resident_memory_bytes / {r=$2}
    END {printf "%d %d %d\n", g, h, r}'
}
end=$(( $(date +%s) + MINUTES * 60 ))
: >"$work/samples"
round=0
while [ "$(date +%s)" -lt "$end" ]; do
  round=$((round+1))
  "$BIN" load --target "sip:echo@127.0.0.1:$SIP_PORT" --calls 200 --concurrency 100 --rate 40 --hold 5s --json >"$work/load.json"
  jq -e '.failed == 0 and .rtp_packets_lost == 0' "$work/load.json" >/dev/null || { echo "soak: round $round failed: $(cat "$work/load.json")"; exit 1; }
  sleep 2 # let hung-up calls finish their records
  s=$(sample); echo "$s" >>"$work/samples"
  echo "soak: round $round: goroutines heap rss = $s"
done
# The first fifth is warm-up (the runtime and SQLite grow their arenas and
# caches once); the next fifth is the baseline the last fifth is held to.
n=$(wc -l <"$work/samples")
q=$(( n / 5 )); [ "$q" -ge 1 ] || q=1
first=$(tail -n +$((q + 1)) "$work/samples" | head -n "$q" | awk '{g+=$1; h+=$2; r+=$3} END {printf "%f %f %f", g/NR, h/NR, r/NR}')
last=$(tail -n "$q" "$work/samples" | awk '{g+=$1; h+=$2; r+=$3} END {printf "%f %f %f", g/NR, h/NR, r/NR}')
echo "soak: baseline mean (goroutines heap rss) $first; last fifth $last"
awk -v f="$first" -v l="$last" 'BEGIN {split(f,a," "); split(l,b," ");
  if (b[1] > a[1] + 50 || b[2] > a[2]*1.2 || b[3] > a[3]*1.2) {print "soak: FAIL: growth"; exit 1}
  print "soak: flat"}'
