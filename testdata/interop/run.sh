#!/usr/bin/env bash
# Interop: real SIP software we did not write calls a freshly started
# voxbridge on loopback, then the call records are checked over HTTP.
#   1. SIPp's built-in uac scenario (INVITE → 200 → ACK → BYE).
#   2. voxbridge dial: greeting heard, DTMF ends the echo, server hangs up.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-bin/voxbridge}
SIP_PORT=${SIP_PORT:-25060}
HTTP_PORT=${HTTP_PORT:-28080}
API="http://127.0.0.1:${HTTP_PORT}"
# The server stores this key at start; every API call below sends it.
export VOXBRIDGE_API_KEY=${VOXBRIDGE_API_KEY:-interop-test-key-0123456789abcdef}
api() { curl -fsS -H "Authorization: Bearer $VOXBRIDGE_API_KEY" "$API$1"; }

if ! command -v sipp >/dev/null 2>&1; then
  echo "interop: installing SIPp (sip-tester)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq sip-tester >/dev/null
fi
for tool in curl jq; do
  command -v "$tool" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
done
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/voxbridge

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "interop: FAIL: $*" >&2
  echo "--- server log (tail) ---" >&2
  tail -n 40 "$work/server.log" >&2 || true
  exit 1
}

"$BIN" serve --sip-addr "127.0.0.1:${SIP_PORT}" --http-addr "127.0.0.1:${HTTP_PORT}" \
  --rtp-ports 31000-31999 --db "$work/voxbridge.db" --sip-anonymous '*' >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$API/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || fail "server exited at start"
  sleep 0.1
done
curl -fsS "$API/healthz" >/dev/null || fail "server not healthy"

passed=0
failed=0
check() { # name, condition result
  if [ "$2" = "true" ]; then echo "interop: ok   $1"; passed=$((passed+1)); else echo "interop: FAIL $1"; failed=$((failed+1)); fi
}

# sipp_uac NAME PORT MEDIA_PORT PAUSE_MS [extra sipp args]: one call with
# SIPp's built-in uac scenario (INVITE, ACK, pause, BYE).
sipp_uac() {
  local name=$1 port=$2 mport=$3 pause=$4
  shift 4
  if sipp -sn uac "127.0.0.1:${SIP_PORT}" -s echo -i 127.0.0.1 -p "$port" -mp "$mport" \
      -m 1 -l 1 -d "$pause" -timeout 30s -timeout_error -nostdin "$@" \
      -trace_err -error_file "$work/sipp_${port}_err.log" >"$work/sipp_${port}.log" 2>&1; then
    check "$name" true
  else
    cat "$work/sipp_${port}_err.log" "$work/sipp_${port}.log" 2>/dev/null | tail -n 30 >&2 || true
    check "$name" false
  fi
}

# 1. SIPp uac over UDP: 3 s of call time, then SIPp hangs up.
sipp_uac "sipp uac call completes" 25070 26000 3000
sleep 0.5
rec=$(api "/v1/calls?page_size=1" | jq '.result[0]')
check "sipp call recorded as hangup by remote, normal" \
  "$(jq -r '.status=="hangup" and .hangup_by=="remote" and .hangup_reason=="normal" and .codec=="PCMU"' <<<"$rec")"
check "sipp call has RTP packets sent (>100 in 3 s)" "$(jq -r '.rtp_packets_out > 100' <<<"$rec")"

# 1b. The same over TCP (one connection carries the whole dialog).
sipp_uac "sipp uac call over TCP completes" 25071 26100 1000 -t t1

# 2. voxbridge dial: hears the greeting, presses 1 during the echo test,
#    the server says goodbye and hangs up.
"$BIN" dial "sip:echo@127.0.0.1:${SIP_PORT}" --digits "1@6s" --duration 30s --json \
  --record "$work/heard.wav" >"$work/dial.json" 2>"$work/dial.err" || { cat "$work/dial.err" >&2; fail "voxbridge dial failed"; }
sum=$(tail -n 1 "$work/dial.json")
echo "interop: dial summary: $sum"
check "dial: server hung up after the digit" "$(jq -r '.remote_hangup' <<<"$sum")"
check "dial: heard audio (>5 s) with packets in" "$(jq -r '.heard_ms > 5000 and .packets_in > 250' <<<"$sum")"
sleep 0.5
rec=$(api "/v1/calls?page_size=1" | jq '.result[0]')
check "dial call recorded: hangup by local, digit 1" \
  "$(jq -r '.status=="hangup" and .hangup_by=="local" and .hangup_reason=="normal" and .dtmf=="1"' <<<"$rec")"
check "dial call: no RTP loss on loopback" "$(jq -r '.rtp_packets_lost == 0 and .rtp_packets_in > 250' <<<"$rec")"
if command -v sox >/dev/null 2>&1; then
  rms=$(sox "$work/heard.wav" -n stat 2>&1 | awk '/RMS +amplitude/ {print $3}')
  check "dial: recorded audio is not silent (sox RMS $rms)" "$(awk -v r="$rms" 'BEGIN{print (r>0.01)?"true":"false"}')"
fi

# 3. Registration with digest and a wrong password, by SIPp (its own server).
if BIN="$BIN" ./testdata/sipp/run.sh >"$work/sipp_reg.log" 2>&1; then
  check "sipp REGISTER with digest, wrong password refused" true
else
  cat "$work/sipp_reg.log" >&2
  check "sipp REGISTER with digest, wrong password refused" false
fi
grep "sipp interop:" "$work/sipp_reg.log" || true

echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
