#!/usr/bin/env bash
# SIPp interop for extensions and trunks, against a freshly started voxbridge
# on loopback with its own database:
#   1. register.xml: REGISTER with digest, the 200 lists the binding, then
#      unregister through the challenge again.
#   2. register_wrong.xml: a wrong password gets 403 after the challenge.
#   3. uac_auth_call.xml: a registered extension calls +14155550100
#      (digest on REGISTER and on INVITE with 407); voxbridge routes it
#      through trunk "carrier" to SIPp acting as the carrier
#      (uas_carrier_407.xml), answering the carrier's 407 with the trunk's
#      credentials, which this script checks against the trunk password.
#      CARRIER_CALL=0 skips it.
# Usage: BIN=bin/voxbridge testdata/sipp/run.sh   (from the repository root)
# Extra serve flags: SERVE_ARGS="...".
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-bin/voxbridge}
SIP_PORT=${SIP_PORT:-25260}
HTTP_PORT=${HTTP_PORT:-28280}
UAC_PORT=${UAC_PORT:-25270}
CARRIER_PORT=${CARRIER_PORT:-25280}
SCEN=testdata/sipp
EXT_USER=alice
EXT_PASS=alice-interop-secret
TRUNK_USER=acct
TRUNK_PASS=carrier-interop-secret

command -v sipp >/dev/null 2>&1 || { echo "sipp interop: sipp missing (apt-get install sip-tester)" >&2; exit 1; }
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/voxbridge

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
passed=0
failed=0
check() { # name, "true"/"false"
  if [ "$2" = "true" ]; then echo "sipp interop: ok   $1"; passed=$((passed+1)); else echo "sipp interop: FAIL $1"; failed=$((failed+1)); fi
}
show() { # files to show on failure
  for f in "$@"; do [ -f "$f" ] && { echo "--- $f (tail)" >&2; tail -n 30 "$f" >&2; }; done
}

db="$work/voxbridge.db"
"$BIN" extensions add --db "$db" --number 1001 --username "$EXT_USER" --password "$EXT_PASS" --call-out >/dev/null
"$BIN" trunks add --db "$db" --name carrier --host 127.0.0.1 --port "$CARRIER_PORT" \
  --username "$TRUNK_USER" --password "$TRUNK_PASS" >/dev/null

# SIPp 3.6 (Debian bookworm) answers only the first challenge and knows only
# MD5, while voxbridge offers SHA-256 first (RFC 8760): ask for MD5 first
# when serve has the setting.
serve_args=()
sipp_ver=$( (sipp -v 2>&1 || true) | sed -n 's/.*SIPp v\([0-9]*\.[0-9]*\).*/\1/p' | head -n 1)
if ("$BIN" serve -h 2>&1 || true) | grep -q -- '-sip-digest'; then
  serve_args+=(--sip-digest "MD5,SHA-256")
elif [ "$(printf '%s\n3.7\n' "$sipp_ver" | sort -V | head -n 1)" != "3.7" ]; then
  echo "sipp interop: warning: SIPp $sipp_ver knows only MD5 and serve has no --sip-digest; registration will fail" >&2
fi
# shellcheck disable=SC2086
"$BIN" serve --db "$db" --sip-addr "127.0.0.1:${SIP_PORT}" --http-addr "127.0.0.1:${HTTP_PORT}" \
  --rtp-ports 33000-33999 "${serve_args[@]}" ${SERVE_ARGS:-} >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:${HTTP_PORT}/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:${HTTP_PORT}/healthz" >/dev/null || { show "$work/server.log"; echo "sipp interop: server did not start" >&2; exit 1; }

sipp_run() { # name, log prefix, sipp args...
  local name=$1 log=$2
  shift 2
  if sipp "127.0.0.1:${SIP_PORT}" -i 127.0.0.1 -m 1 -nostdin -timeout 30s -timeout_error \
      -trace_err -error_file "$work/$log.err" "$@" >"$work/$log.out" 2>&1; then
    check "$name" true
  else
    show "$work/$log.err" "$work/$log.out"
    check "$name" false
  fi
}

sipp_run "REGISTER with digest, binding listed, unregister" register \
  -sf "$SCEN/register.xml" -p "$UAC_PORT" -s "$EXT_USER" -au "$EXT_USER" -ap "$EXT_PASS"
sipp_run "REGISTER with a wrong password gets 403" register_wrong \
  -sf "$SCEN/register_wrong.xml" -p "$UAC_PORT" -s "$EXT_USER" -au "$EXT_USER" -ap "not-the-password"

if [ "${CARRIER_CALL:-1}" = "1" ]; then
  sipp -sf "$SCEN/uas_carrier_407.xml" -i 127.0.0.1 -p "$CARRIER_PORT" -m 1 -nostdin -timeout 30s -timeout_error \
    -trace_err -error_file "$work/carrier.err" -trace_logs -log_file "$work/carrier.log" >"$work/carrier.out" 2>&1 &
  carrier=$!
  sleep 0.3
  sipp_run "registered extension calls out through a 407 trunk" uac_call \
    -sf "$SCEN/uac_auth_call.xml" -p "$UAC_PORT" -key user "$EXT_USER" -au "$EXT_USER" -ap "$EXT_PASS" \
    -s +14155550100 -d 2000
  if wait "$carrier"; then
    check "carrier (SIPp) saw the call authenticated, answered and hung up" true
  else
    show "$work/carrier.err" "$work/carrier.out" "$work/server.log"
    check "carrier (SIPp) saw the call authenticated, answered and hung up" false
  fi
  # The carrier logged the Proxy-Authorization it got: its response must be
  # the MD5 digest of the trunk's username and password for that challenge.
  pa=$(sed -n 's/.*Proxy-Authorization: //p' "$work/carrier.log" 2>/dev/null | head -n 1)
  param() { sed -n "s/.*[ ,]$1=\"\{0,1\}\([^\",]*\).*/\1/p" <<<"$pa"; }
  md5() { printf '%s' "$1" | md5sum | cut -d' ' -f1; }
  ha1=$(md5 "$(param username):$(param realm):$TRUNK_PASS")
  ha2=$(md5 "INVITE:$(param uri)")
  want=$(md5 "$ha1:$(param nonce):$(param nc):$(param cnonce):$(param qop):$ha2")
  if [ -n "$pa" ] && [ "$(param username)" = "$TRUNK_USER" ] && [ "$(param response)" = "$want" ]; then
    check "carrier's 407 answered with the trunk's credentials (MD5 response verified)" true
  else
    echo "sipp interop: carrier got: ${pa:-nothing}" >&2
    check "carrier's 407 answered with the trunk's credentials (MD5 response verified)" false
  fi
else
  echo "sipp interop: skip the call through the carrier (CARRIER_CALL=0)"
fi

echo "sipp interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
