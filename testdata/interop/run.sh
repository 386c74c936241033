#!/usr/bin/env bash
# Interop: real SIP software we did not write calls a freshly started
# voxbridge on loopback, then the call records are checked over HTTP.
#   1. SIPp's built-in uac scenario (INVITE → 200 → ACK → BYE).
#   1d/1e. SIPp REFER in a call, and CANCEL during ringing.
#   1f. SIPp plays PCMA speech and an RFC 4733 digit from pcaps.
#   2. voxbridge dial: greeting heard, DTMF ends the echo, server hangs up.
#   3. SIPp with its own server (testdata/sipp/run.sh): REGISTER with digest,
#      a wrong password, and a registered extension calling out through a
#      SIPp carrier that challenges with 407.
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
more_pids=() # other processes a section started and must not outlive the script
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  for p in "${more_pids[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
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

# 1c. SIPp holds the echo call by re-INVITE (sendonly, then c=0.0.0.0),
#     resumes it and refreshes by UPDATE (testdata/sipp/reinvite-hold.xml
#     checks the direction of each answer); the record keeps the hold.
if sipp "127.0.0.1:${SIP_PORT}" -sf testdata/sipp/reinvite-hold.xml -s echo -i 127.0.0.1 -p 25072 -mp 26200 \
    -m 1 -timeout 30s -timeout_error -nostdin -trace_err -error_file "$work/sipp_25072_err.log" >"$work/sipp_25072.log" 2>&1; then
  check "sipp re-INVITE hold, old-style hold, resume, UPDATE refresh" true
else
  cat "$work/sipp_25072_err.log" "$work/sipp_25072.log" 2>/dev/null | tail -n 30 >&2 || true
  check "sipp re-INVITE hold, old-style hold, resume, UPDATE refresh" false
fi
sleep 0.5
rec=$(api "/v1/calls?page_size=1" | jq '.result[0]')
check "sipp hold recorded: one hold, resumed at the end" \
  "$(jq -r '.variables["call.hold_count"]=="1" and .variables["call.remote_hold"]=="false"' <<<"$rec")"

# 1d. SIPp sends REFER in its echo call (testdata/sipp/refer.xml): 202,
#     then NOTIFY sipfrag 100 and a final one (603: an echo call has nobody
#     to hand over), and the call goes on to SIPp's BYE.
if sipp "127.0.0.1:${SIP_PORT}" -sf testdata/sipp/refer.xml -s echo -i 127.0.0.1 -p 25073 -mp 26300 \
    -m 1 -timeout 30s -timeout_error -nostdin -trace_err -error_file "$work/sipp_25073_err.log" >"$work/sipp_25073.log" 2>&1; then
  check "sipp REFER: 202, NOTIFY 100 then a final sipfrag" true
else
  cat "$work/sipp_25073_err.log" "$work/sipp_25073.log" 2>/dev/null | tail -n 30 >&2 || true
  check "sipp REFER: 202, NOTIFY 100 then a final sipfrag" false
fi

# 1e. CANCEL during ringing (testdata/sipp/cancel_ringing.xml): a number
#     routed to a flow that rings 10 s before answering; SIPp cancels after
#     the 180: 200 to the CANCEL, 487 to the INVITE, recorded as cancel.
printf '%s' '{"id":"ringing","name":"Rings before it answers","actions":[{"type":"sleep","option":{"duration_ms":10000}},{"type":"answer"},{"type":"hangup"}]}' >"$work/ringing.json"
"$BIN" flows create --api "$API" "$work/ringing.json" >/dev/null || fail "flows create ringing"
"$BIN" numbers add --db "$work/voxbridge.db" --number +15550000001 --flow ringing >/dev/null || fail "numbers add"
if sipp "127.0.0.1:${SIP_PORT}" -sf testdata/sipp/cancel_ringing.xml -s +15550000001 -i 127.0.0.1 -p 25074 -mp 26400 \
    -m 1 -timeout 30s -timeout_error -nostdin -trace_err -error_file "$work/sipp_25074_err.log" >"$work/sipp_25074.log" 2>&1; then
  check "sipp CANCEL during ringing: 200 to CANCEL, 487 to INVITE" true
else
  cat "$work/sipp_25074_err.log" "$work/sipp_25074.log" 2>/dev/null | tail -n 30 >&2 || true
  check "sipp CANCEL during ringing: 200 to CANCEL, 487 to INVITE" false
fi
sleep 0.5
rec=$(api "/v1/calls?page_size=1" | jq '.result[0]')
check "cancelled call recorded: hangup by remote, reason cancel, 487" \
  "$(jq -r '.status=="hangup" and .hangup_by=="remote" and .hangup_reason=="cancel" and .sip_code==487 and .flow_id=="ringing"' <<<"$rec")"

# 1f. A PCMA call whose audio comes from a pcap, then the digit 1 as RFC
#     4733 events from SIPp's own pcaps (testdata/sipp/uac_pcap_dtmf.xml):
#     the echo test ends on the digit and voxbridge sends the BYE.
pcapdir=""
for d in /usr/share/sip-tester /usr/share/sipp /usr/local/share/sipp; do
  [ -f "$d/dtmf_2833_1.pcap" ] && [ -f "$d/g711a.pcap" ] && { pcapdir=$d; break; }
done
if [ -z "$pcapdir" ]; then
  check "sipp pcap audio and DTMF: SIPp's pcaps (g711a.pcap, dtmf_2833_1.pcap) found" false
elif mkdir -p "$work/pcap" && cp testdata/sipp/uac_pcap_dtmf.xml "$pcapdir/g711a.pcap" "$pcapdir/dtmf_2833_1.pcap" "$work/pcap/" &&
  sipp "127.0.0.1:${SIP_PORT}" -sf "$work/pcap/uac_pcap_dtmf.xml" -s echo -i 127.0.0.1 -p 25075 -mp 26500 \
    -m 1 -timeout 40s -timeout_error -nostdin -trace_err \
    -error_file "$work/sipp_25075_err.log" >"$work/sipp_25075.log" 2>&1; then
  check "sipp PCMA from a pcap, DTMF 1 from a pcap, BYE from voxbridge" true
else
  cat "$work/sipp_25075_err.log" "$work/sipp_25075.log" 2>/dev/null | tail -n 30 >&2 || true
  check "sipp PCMA from a pcap, DTMF 1 from a pcap, BYE from voxbridge" false
fi
sleep 0.5
rec=$(api "/v1/calls?page_size=1" | jq '.result[0]')
check "pcap call recorded: PCMA, digit 1, hung up by voxbridge, RTP received" \
  "$(jq -r '.status=="hangup" and .hangup_by=="local" and .codec=="PCMA" and .dtmf=="1" and .rtp_packets_in > 100' <<<"$rec")"

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

# 3. Registration with digest and a wrong password, and a registered
#    extension's call out through a carrier answering its 407 with the
#    trunk's credentials, by SIPp (its own server).
if BIN="$BIN" ./testdata/sipp/run.sh >"$work/sipp_reg.log" 2>&1; then
  check "sipp REGISTER with digest, wrong password refused, call out through a 407 carrier" true
else
  cat "$work/sipp_reg.log" >&2
  check "sipp REGISTER with digest, wrong password refused, call out through a 407 carrier" false
fi
grep "sipp interop:" "$work/sipp_reg.log" || true

# 4. baresip (Debian package baresip) as extension 1001, with the
#    credentials `voxbridge extensions add` made: it registers, calls the
#    echo flow playing a 600 Hz wav (aufile) and hears it back (sndfile
#    dumps what it decodes), then calls extension 1002, a SIPp UAS that
#    registered with its own credentials and echoes RTP. Its own server:
#    baresip 1.0 (libre) answers MD5 challenges only and gives up when a
#    SHA-256 one is offered too, so this one offers MD5 only; anonymous
#    calls are off, so every INVITE is authenticated.
if ! command -v baresip >/dev/null 2>&1; then
  echo "interop: installing baresip"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends baresip-core >/dev/null || true
fi
if command -v baresip >/dev/null 2>&1; then
  bs="$work/baresip"
  BS_SIP=${BS_SIP:-25160} BS_HTTP=${BS_HTTP:-28180} BS_UA=${BS_UA:-25170} BS_EXT2=${BS_EXT2:-25180}
  mkdir -p "$bs/conf" "$bs/snd"
  bs_api() { curl -fsS -H "Authorization: Bearer $VOXBRIDGE_API_KEY" "http://127.0.0.1:${BS_HTTP}$1"; }
  "$BIN" extensions add --db "$bs/voxbridge.db" --number 1001 --username bob --name "Bob (baresip)" \
    --password bob-interop-secret >/dev/null
  "$BIN" extensions add --db "$bs/voxbridge.db" --number 1002 --username carol \
    --password carol-interop-secret >/dev/null
  "$BIN" serve --db "$bs/voxbridge.db" --sip-addr "127.0.0.1:${BS_SIP}" --http-addr "127.0.0.1:${BS_HTTP}" \
    --rtp-ports 32000-32999 --sip-digest MD5 --sip-anonymous '' >"$bs/server.log" 2>&1 &
  more_pids+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:${BS_HTTP}/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  sox -n -r 8000 -c 1 -b 16 "$bs/tone.wav" synth 20 sine 600 vol 0.5
  # Headless: no audio device (aufile in, sndfile dumps out), loopback
  # only (net_interface, or it offers the host's address in its SDP).
  cat >"$bs/conf/config" <<CONF
poll_method		poll
net_interface		127.0.0.1
sip_listen		127.0.0.1:${BS_UA}
audio_player		aufile,/dev/null
audio_source		aufile,$bs/tone.wav
audio_alert		aufile,/dev/null
module_path		/usr/lib/baresip/modules
module			g711.so
module			aufile.so
module			sndfile.so
module_app		account.so
module_app		menu.so
snd_path		$bs/snd
rtp_ports		35000-35099
CONF
  echo "<sip:bob@127.0.0.1:${BS_SIP}>;auth_user=bob;auth_pass=bob-interop-secret;regint=300;audio_codecs=PCMU" \
    >"$bs/conf/accounts"
  # baresip_call NAME URI SECONDS: one call, ended by baresip's quit (-t).
  baresip_call() {
    rm -f "$bs"/snd/*
    timeout $(( $3 + 20 )) baresip -4 -f "$bs/conf" -t "$3" -e "/dial $2" >"$bs/$1.log" 2>&1 || true
  }
  # heard_hz: the strongest frequency in the last 2.5 s baresip decoded
  # (sox's spectrum; the echo flow's greeting comes first).
  heard_hz() {
    local f
    f=$(ls "$bs"/snd/*-dec.wav 2>/dev/null | head -n 1) || true
    [ -n "$f" ] || return 0
    sox "$f" -n trim -2.5 stat -freq 2>&1 | awk 'NF==2 && $1+0>0 { if ($2>m) { m=$2; f=$1 } } END { if (m) printf "%.0f", f }' || true
  }
  near600() { awk -v f="${1:-0}" 'BEGIN{print (f>560 && f<640)?"true":"false"}'; }

  baresip_call echo "sip:echo@127.0.0.1:${BS_SIP}" 10
  sleep 0.5
  rec=$(bs_api "/v1/calls?page_size=1" | jq '.result[0]')
  check "baresip registered with extensions-add credentials" \
    "$(grep -q 'sip register.*extension=1001.*bindings=1' "$bs/server.log" && echo true || echo false)"
  check "baresip call to echo: extension 1001, answered, lasted >5 s, hung up by baresip" \
    "$(jq -r '.status=="hangup" and .hangup_by=="remote" and .codec=="PCMU" and .tm_progressing != null
      and ((.tm_hangup|sub("\\.[0-9]+";"")|fromdateiso8601) - (.tm_progressing|sub("\\.[0-9]+";"")|fromdateiso8601)) >= 5' <<<"$rec")"
  hz=$(heard_hz)
  check "baresip heard its 600 Hz echoed (sox: ${hz:-nothing} Hz)" "$(near600 "$hz")"

  sipp "127.0.0.1:${BS_SIP}" -sf testdata/sipp/register_only.xml -i 127.0.0.1 -p "$BS_EXT2" -m 1 -nostdin \
    -s carol -au carol -ap carol-interop-secret -timeout 15s -timeout_error >"$bs/ext2_reg.log" 2>&1 ||
    { tail -n 20 "$bs/ext2_reg.log" >&2; }
  sipp -sn uas -i 127.0.0.1 -p "$BS_EXT2" -mp 26200 -rtp_echo -m 1 -nostdin -timeout 40s -timeout_error \
    >"$bs/ext2_uas.log" 2>&1 &
  uas=$!
  more_pids+=($uas)
  sleep 0.3
  baresip_call ext "sip:1002@127.0.0.1:${BS_SIP}" 8
  if wait "$uas"; then check "extension 1002 (SIPp) answered baresip's call and got the BYE" true
  else tail -n 30 "$bs/ext2_uas.log" "$bs/server.log" >&2; check "extension 1002 (SIPp) answered baresip's call and got the BYE" false; fi
  sleep 0.5
  recs=$(bs_api "/v1/calls?page_size=2" | jq '.result')
  check "baresip → 1002 recorded: both legs answered and linked" \
    "$(jq -r 'length==2 and all(.[]; .tm_progressing != null and .status=="hangup")
      and ([.[] | select(.direction=="outgoing")][0].master_call_id == [.[] | select(.direction=="incoming")][0].id)' <<<"$recs")"
  hz=$(heard_hz)
  check "baresip heard its 600 Hz back through extension 1002 (sox: ${hz:-nothing} Hz)" "$(near600 "$hz")"
else
  check "baresip installed (apt-get install baresip-core)" false
fi

# 5. SIPVicious, what toll-fraud scanners run, against a server started
#    with --sip-silent-unknown and two extensions: svmap (OPTIONS sweep)
#    gets no answer; svwar (REGISTER per extension, --force past its
#    sanity check) learns nothing, since real and unknown extensions get
#    the same 401; a control svcrack with only 1002's password cracks it
#    (the tool and the MD5 digest work); then svcrack against 1001 with
#    its password 13th in the list cracks nothing: after 10 failures the
#    source is locked out and even the right password gets 403. Every
#    tool is bounded by timeout.
if ! command -v svwar >/dev/null 2>&1; then
  echo "interop: installing sipvicious"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq sipvicious >/dev/null
fi
sv="$work/sipvicious"
SV_SIP=${SV_SIP:-25260} SV_HTTP=${SV_HTTP:-28280}
mkdir -p "$sv"
"$BIN" extensions add --db "$sv/voxbridge.db" --number 1001 --username 1001 --password sunshine-2024 >/dev/null
"$BIN" extensions add --db "$sv/voxbridge.db" --number 1002 --username 1002 --password control-pass-1 >/dev/null
"$BIN" serve --db "$sv/voxbridge.db" --sip-addr "127.0.0.1:${SV_SIP}" --http-addr "127.0.0.1:${SV_HTTP}" \
  --rtp-ports 33000-33099 --sip-digest MD5 --sip-anonymous '' --sip-silent-unknown true >"$sv/server.log" 2>&1 &
more_pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:${SV_HTTP}/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
printf '%s\n' 100 1000 1001 1002 1003 2000 >"$sv/extensions.txt"
(cd "$sv" && timeout 30 svmap -p "$SV_SIP" 127.0.0.1 >"$sv/svmap.log" 2>&1) || true
check "svmap: the silent server is not found" "$(grep -q 'found nothing' "$sv/svmap.log" && ! grep -q "127.0.0.1:${SV_SIP}" "$sv/svmap.log" && echo true || echo false)"
(cd "$sv" && timeout 30 svwar --force -d "$sv/extensions.txt" -p "$SV_SIP" 127.0.0.1 >"$sv/svwar.log" 2>&1) || true
check "svwar: no extension found" "$(grep -q 'found nothing' "$sv/svwar.log" && ! grep -Eq '\| *100[12] *\|' "$sv/svwar.log" && echo true || echo false)"
printf 'control-pass-1\n' >"$sv/control.txt"
(cd "$sv" && timeout 30 svcrack -u 1002 -d "$sv/control.txt" -p "$SV_SIP" 127.0.0.1 >"$sv/svcrack_control.log" 2>&1) || true
check "svcrack control: the right password alone is found (the tool works)" "$(grep -q 'control-pass-1' "$sv/svcrack_control.log" && echo true || echo false)"
{ for i in $(seq 1 12); do echo "guess-$i"; done; echo sunshine-2024; echo password; } >"$sv/words.txt"
(cd "$sv" && timeout 20 svcrack -u 1001 -d "$sv/words.txt" -p "$SV_SIP" 127.0.0.1 >"$sv/svcrack.log" 2>&1) || true
check "svcrack: no password cracked (the source was locked out)" \
  "$(! grep -q 'sunshine-2024' "$sv/svcrack.log" && grep -q 'locked out' "$sv/server.log" && echo true || echo false)"
check "server counted the silent drops" "$(grep -q 'reason=silent_unknown' "$sv/server.log" && echo true || echo false)"

echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
