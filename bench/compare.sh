#!/usr/bin/env bash
# Side by side: the same SIPp load against voxbridge and against an echo
# server built on diago (bench/diago-echo), one after the other, on loopback.
# For each run: SIPp's answered and failed calls, the server's CPU seconds
# (utime+stime from /proc) and peak RSS (VmHWM); for voxbridge also the
# write errors in its log and, after it stops, what its database kept.
#
# Usage (from anywhere; `make bench-compare` runs it):
#   bench/compare.sh
#   LOADS="200:50" bench/compare.sh                 # quick smoke test
#   LOADS="4000:200" ORDER=voxbridge-first ROUNDS=3 bench/compare.sh
# Environment:
#   LOADS     space-separated CALLS:RATE pairs (default "2000:100 4000:200")
#   ORDER     diago-first, voxbridge-first or alternate (default: alternate,
#             which flips the order from one load to the next, and from
#             one round to the next, so neither server always goes first)
#   ROUNDS    how many times to run all the loads (default 1)
#   HOLD_MS   call length after the ACK (default 8000, as in the scenario)
#   COOLDOWN  seconds of rest between runs (default 10)
#   QUIET_PCT, QUIET_WAIT  before each run, wait up to QUIET_WAIT seconds
#             (default 300) for the cores to be under QUIET_PCT % busy
#             (default 15) over 3 s: other people's jobs share this machine
#   OTHERS_MAX, RETRIES  a run during which other processes used more than
#             OTHERS_MAX CPU seconds (default 3) is run again, up to RETRIES
#             more times (default 2); the last attempt is the one reported
#   WORK      where logs, databases and SIPp statistics go (default: a new
#             /tmp/bench-compare.* directory, kept and printed at the end)
#   GO        the go command (default: go)
#   VB_BIN    a voxbridge binary to measure instead of building bin/voxbridge
#   VB_ARGS, DG_ARGS  extra flags for voxbridge serve / diago-echo, e.g.
#             VB_ARGS="--sip-max-cps 0" (serve refuses calls over 300/s by
#             default, and SIPp's rate comes in bursts when the cores are full)
# Everything listens on and sends to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
LOADS=${LOADS:-"2000:100 4000:200"}
ORDER=${ORDER:-alternate}
ROUNDS=${ROUNDS:-1}
HOLD_MS=${HOLD_MS:-8000}
COOLDOWN=${COOLDOWN:-10}
QUIET_PCT=${QUIET_PCT:-15}
QUIET_WAIT=${QUIET_WAIT:-300}
OTHERS_MAX=${OTHERS_MAX:-3}
RETRIES=${RETRIES:-2}
WORK=${WORK:-$(mktemp -d /tmp/bench-compare.XXXXXX)}
mkdir -p "$WORK"

# Ports: each server and its SIPp get their own, all below Linux's
# ephemeral range (32768+) so nothing else on the machine takes them.
# Each RTP range (10000 ports) is large enough for 1600 calls up at once
# with RTP and RTCP on separate ports.
VB_SIP=${VB_SIP:-11060}
VB_HTTP=${VB_HTTP:-11080}
VB_RTP=${VB_RTP:-12000-21999}
DG_SIP=${DG_SIP:-11070}
DG_RTP=${DG_RTP:-22000-31999}
SIPP_PORT_VB=${SIPP_PORT_VB:-11160}
SIPP_PORT_DG=${SIPP_PORT_DG:-11170}
# SIPp binds -mp and -mp+2; every call's audio leaves from there (see the
# scenario for why [media_port] and not [auto_media_port]).
SIPP_MP_VB=${SIPP_MP_VB:-11260}
SIPP_MP_DG=${SIPP_MP_DG:-11270}

case "$ORDER" in diago-first|voxbridge-first|alternate) ;; *) echo "ORDER must be diago-first, voxbridge-first or alternate" >&2; exit 2 ;; esac

# --- tools -------------------------------------------------------------------
install_pkg() { # package: Debian's, installed quietly when its command is missing
  echo "bench-compare: installing $1" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "$1" >/dev/null
}
command -v sipp >/dev/null 2>&1 || install_pkg sip-tester
command -v sqlite3 >/dev/null 2>&1 || install_pkg sqlite3
command -v curl >/dev/null 2>&1 || install_pkg curl # voxbridge's /healthz and /metrics
PCAP=""
for p in /usr/share/sip-tester/g711a.pcap /usr/share/sipp/g711a.pcap /usr/local/share/sipp/pcap/g711a.pcap; do
  [ -f "$p" ] && { PCAP=$p; break; }
done
if [ -z "$PCAP" ] && command -v dpkg >/dev/null 2>&1; then
  PCAP=$(dpkg -L sip-tester 2>/dev/null | grep '/g711a\.pcap$' | head -n 1 || true)
fi
[ -n "$PCAP" ] || { echo "bench-compare: SIPp's g711a.pcap not found" >&2; exit 1; }

# 1600 calls up at once hold two or three sockets each in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

# --- build -------------------------------------------------------------------
if [ -z "${VB_BIN:-}" ]; then
  echo "bench-compare: building bin/voxbridge" >&2
  "$GO" build -o bin/voxbridge ./cmd/voxbridge
  VB_BIN=$PWD/bin/voxbridge
fi
echo "bench-compare: building bin/diago-echo" >&2
# diago-echo has its own go.mod: build it as its own module.
(cd bench/diago-echo && "$GO" build -o ../../bin/diago-echo .)
DG_BIN=$PWD/bin/diago-echo

# SIPp looks for the pcap next to the scenario (and in its working
# directory): put both in one folder and run SIPp from there.
SCEN_DIR=$WORK/scenario
mkdir -p "$SCEN_DIR"
sed "s/<pause milliseconds=\"8000\"\/>/<pause milliseconds=\"$HOLD_MS\"\/>/" bench/uac_echo_8s.xml >"$SCEN_DIR/uac_echo.xml"
cp "$PCAP" "$SCEN_DIR/g711a.pcap"

CLK_TCK=$(getconf CLK_TCK)
server_pid=""
cleanup() { # never leave a server behind, even on ^C
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
busy_pct() { # seconds: % of all cores busy over that window (others' work before a run)
  # The load average says little here: SIPp's pcap player is a thread per
  # call, so 1600 calls push it past 30 while the cores are not that busy.
  local a b
  a=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
  sleep "$1"
  b=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
    busy = y[1] - x[1]; idle = y[2] - x[2]; printf "%.0f", (busy + idle > 0) ? 100 * busy / (busy + idle) : 0 }'
}
machine_busy_s() { # CPU seconds all cores have been busy since boot
  awk -v t="$CLK_TCK" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / t }' /proc/stat
}
wait_quiet() { # prints the last busy %: waits until it is under QUIET_PCT or QUIET_WAIT runs out
  local b deadline=$((SECONDS + QUIET_WAIT))
  while :; do
    b=$(busy_pct 3)
    if [ "$b" -lt "$QUIET_PCT" ] || [ "$SECONDS" -ge "$deadline" ]; then break; fi
  done
  echo "$b"
}
proc_snapshot() { # file: "pid ticks comm" of every process now (utime+stime)
  # cat goes on past processes that exit meanwhile; comm may hold spaces,
  # so the fields are counted from the last ")".
  cat /proc/[0-9]*/stat 2>/dev/null | awk '{
    i = index($0, "("); j = length($0); while (j > i && substr($0, j, 1) != ")") j--
    comm = substr($0, i + 1, j - i - 1); gsub(/ /, "_", comm)
    split(substr($0, j + 2), f, " "); print $1, f[12] + f[13], comm }' >"$1" || true
}
proc_others() { # before after pid...: "name=CPU s" for other processes that used > 0.5 s
  # Only processes alive at both ends (short-lived ones, such as test builds,
  # are counted in the total only). ksoftirqd here is network work the
  # kernel deferred instead of charging it to the sender.
  local a=$1 b=$2
  shift 2
  awk -v skip=" $* " -v t="$CLK_TCK" '
    FNR == NR { before[$1] = $2; next }
    ($1 in before) && index(skip, " " $1 " ") == 0 {
      name = $3; sub(/\/.*/, "", name); d[name] += ($2 - before[$1]) / t
    }
    END { for (n in d) if (d[n] > 0.5) printf "%s=%.1f\n", n, d[n] }' "$a" "$b" | sort -t= -k2 -rn | head -n 4 | paste -sd, -
}
sip_drops() { # port: datagrams the kernel dropped at that UDP port's full receive buffer
  # A dropped INVITE, ACK or BYE costs a retransmission or the call.
  awk -v p="$(printf '%04X' "$1")" 'NR > 1 { split($2, a, ":"); if (a[2] == p) d += $NF } END { print d + 0 }' /proc/net/udp
}
cpu_seconds() { # pid: user+system CPU of all its threads so far
  # Fields after the ")" that closes comm: utime and stime are the 12th and 13th.
  local s
  s=$(sed 's/^.*) //' "/proc/$1/stat")
  awk -v t="$CLK_TCK" '{ printf "%.2f", ($12 + $13) / t }' <<<"$s"
}
peak_rss_mb() { # pid: VmHWM in MB (1 MB = 1024 KB)
  awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}
stat_col() { # file, column name: that counter in the last row of SIPp's -trace_stat CSV
  awk -F';' -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
    { last = $c } END { print (c && last != "") ? last + 0 : "?" }' "$1"
}
wait_exit() { # pid, seconds: wait for it to exit after SIGTERM, SIGKILL if it will not
  local pid=$1 n=$(($2 * 10))
  while kill -0 "$pid" 2>/dev/null && [ "$n" -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    echo "bench-compare: pid $pid still up after $2 s, SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# start_server NAME LOGDIR: starts it in the background, sets server_pid,
# returns once it listens. NAME is voxbridge or diago.
start_server() {
  local name=$1 dir=$2
  case "$name" in
  voxbridge)
    # shellcheck disable=SC2086 # VB_ARGS and DG_ARGS are lists of flags
    # The command of issue 14, plus loopback ports and a fresh database.
    "$VB_BIN" serve --flows-dir testdata/flows --default-flow echo --sip-anonymous '*' \
      --db "$dir/voxbridge.db" --sip-addr "127.0.0.1:$VB_SIP" --http-addr "127.0.0.1:$VB_HTTP" \
      --rtp-ports "$VB_RTP" --record-dir "$dir/recordings" ${VB_ARGS:-} >"$dir/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do
      curl -fsS "http://127.0.0.1:$VB_HTTP/healthz" >/dev/null 2>&1 && return 0
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    ;;
  diago)
    "$DG_BIN" -addr "127.0.0.1:$DG_SIP" -rtp-ports "$DG_RTP" ${DG_ARGS:-} >"$dir/server.log" 2>&1 &
    server_pid=$!
    # No health endpoint: ready once its UDP socket is bound.
    for _ in $(seq 1 100); do
      ss -Hlun "sport = :$DG_SIP" 2>/dev/null | grep -q . && return 0
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    ;;
  esac
  echo "bench-compare: $name did not start; its log:" >&2
  tail -n 30 "$dir/server.log" >&2 || true
  exit 1
}

RESULTS=$WORK/results.tsv
printf 'round\tload\tserver\tanswered\tfailed\tcpu_s\trss_mb\tsipp_cpu_s\tbusy_before_pct\tloadavg_before\tothers_cpu_s\tothers_who\twrite_errors\trows\thangup_rows\tanswered_no_hangup\tanswered_no_actions\tanswered_not_normal\tsip_drops\tfail_detail\tattempt\n' >"$RESULTS"

# run_one ROUND CALLS RATE SERVER ATTEMPT: one server, one load; writes the
# result row to DIR/row and the other processes' CPU seconds to DIR/others,
run_one() {
  local round=$1 calls=$2 rate=$3 name=$4 attempt=$5
  local tag="r${round}-${calls}at${rate}-${name}"
  [ "$attempt" = 1 ] || tag="$tag-attempt$attempt"
  local dir=$WORK/$tag
  mkdir -p "$dir"
  local sip_port sipp_port mp
  if [ "$name" = voxbridge ]; then sip_port=$VB_SIP sipp_port=$SIPP_PORT_VB mp=$SIPP_MP_VB
  else sip_port=$DG_SIP sipp_port=$SIPP_PORT_DG mp=$SIPP_MP_DG; fi

  local before busy m0
  busy=$(wait_quiet)
  if [ "$busy" -ge "$QUIET_PCT" ]; then
    echo "bench-compare: [$tag] warning: the cores are still ${busy} % busy with other work after ${QUIET_WAIT} s" >&2
  fi
  before=$(loadavg)
  m0=$(machine_busy_s)
  proc_snapshot "$dir/procs.before"
  echo "bench-compare: [$tag] cores ${busy} % busy, load average $before; starting $name" >&2
  start_server "$name" "$dir"

  # Foreground SIPp, statistics to a CSV whose last row is the final count.
  # -l: no cap on calls up at once below the total; -rp 1000: -r is per
  # second; -timeout: a safety net far past the load's natural end.
  local timeout=$((calls / rate + HOLD_MS / 1000 + 120))
  # `times` in the same subshell reports SIPp's own CPU (it shares the cores).
  (
    cd "$SCEN_DIR"
    sipp "127.0.0.1:$sip_port" -sf uac_echo.xml -s echo \
      -i 127.0.0.1 -p "$sipp_port" -mp "$mp" \
      -r "$rate" -rp 1000 -m "$calls" -l "$calls" -timeout "${timeout}s" -nostdin \
      -trace_stat -stf "$dir/sipp_stat.csv" -fd 5 \
      -trace_err -error_file "$dir/sipp_err.log" \
      -trace_logs -log_file "$dir/sipp_answered.log" \
      >"$dir/sipp_screen.log" 2>&1 || true # SIPp exits 1 when any call failed
    times >"$dir/sipp_times"
  )
  local sipp_cpu
  sipp_cpu=$(awk 'NR == 2 { n = split($0, t, /[ms ]+/); s = 0
    for (i = 1; i + 1 <= n; i += 2) s += t[i] * 60 + t[i + 1]; printf "%.2f", s }' "$dir/sipp_times")

  # The server's totals, read while it is still up.
  local cpu rss drops
  cpu=$(cpu_seconds "$server_pid")
  rss=$(peak_rss_mb "$server_pid")
  drops=$(sip_drops "$sip_port")
  # What else ran meanwhile: the machine's busy CPU seconds over the run,
  # less the server's and SIPp's. Roughly 0 on a quiet machine (the kernel's
  # softirq work for the loopback traffic may land here too).
  local others others_who
  others=$(awk -v a="$m0" -v b="$(machine_busy_s)" -v c="$cpu" -v d="$sipp_cpu" \
    'BEGIN { o = b - a - c - d; printf "%.1f", o < 0 ? 0 : o }')
  proc_snapshot "$dir/procs.after"
  others_who=$(proc_others "$dir/procs.before" "$dir/procs.after" "$server_pid" "$$" "$BASHPID")
  if [ "$name" = voxbridge ]; then
    # For the record: what the server counted (refusals, the write queue).
    curl -fsS "http://127.0.0.1:$VB_HTTP/metrics" >"$dir/metrics.txt" 2>/dev/null || true
  fi
  kill -TERM "$server_pid"
  wait_exit "$server_pid" 60
  server_pid=""

  local st=$dir/sipp_stat.csv answered failed detail
  answered=$(stat_col "$st" 'SuccessfulCall(C)')
  failed=$(stat_col "$st" 'FailedCall(C)')
  # Why calls failed, as SIPp counts them (only the non-zero ones).
  detail=""
  for c in FailedCallRejected FailedMaxUDPRetrans FailedUnexpectedMessage FailedTimeoutOnRecv \
      FailedTimeoutOnSend FailedRegexpDoesntMatch FailedCannotSendMessage FailedOutboundCongestion; do
    local v
    v=$(stat_col "$st" "$c(C)")
    if [ "$v" != "0" ] && [ "$v" != "?" ]; then detail="$detail${detail:+,}${c#Failed}=$v"; fi
  done

  local werr="-" rows="-" hangup="-" nohangup="-" noactions="-" notnormal="-"
  if [ "$name" = voxbridge ]; then
    # Why voxbridge refused calls (the 503s' reasons), from its metrics.
    local refused
    refused=$(sed -n 's/^voxbridge_sip_refused_total{reason="\([^"]*\)"} \([1-9][0-9]*\)$/\1=\2/p' \
      "$dir/metrics.txt" 2>/dev/null | paste -sd, - || true)
    if [ -n "$refused" ]; then detail="$detail${detail:+; }refused: $refused"; fi
    werr=$(grep -cE 'update call record|record action|create call record|context deadline exceeded' "$dir/server.log" || true)
    local db=$dir/voxbridge.db
    # The action-run table: call_actions today; action_runs if it is renamed.
    local at
    at=$(sqlite3 "$db" "SELECT name FROM sqlite_master WHERE type='table' AND name IN ('action_runs','call_actions') ORDER BY name='action_runs' DESC LIMIT 1;" || true)
    at=${at:-call_actions}
    # SIPp logged the Call-ID of every call whose BYE got its 200 (the
    # scenario's <log>): those are the answered calls; find each one's row.
    {
      echo "CREATE TEMP TABLE answered (sip_call_id TEXT PRIMARY KEY);"
      echo "BEGIN;"
      grep -o '[0-9]*-[0-9]*@[0-9.]*' "$dir/sipp_answered.log" 2>/dev/null | sort -u | sed "s/.*/INSERT INTO answered VALUES ('&');/" || true
      echo "COMMIT;"
      echo "SELECT count(*) FROM answered;"
      echo "SELECT count(*) FROM calls;"
      echo "SELECT count(*) FROM calls WHERE status = 'hangup';"
      echo "SELECT count(*) FROM answered a WHERE NOT EXISTS (SELECT 1 FROM calls c WHERE c.sip_call_id = a.sip_call_id AND c.status = 'hangup');"
      echo "SELECT count(*) FROM answered a WHERE NOT EXISTS (SELECT 1 FROM calls c JOIN $at r ON r.call_id = c.id WHERE c.sip_call_id = a.sip_call_id);"
      # Answered and hung up by SIPp's BYE, so anything but "normal" is wrong.
      echo "SELECT count(*) FROM answered a JOIN calls c ON c.sip_call_id = a.sip_call_id WHERE c.status = 'hangup' AND c.hangup_reason <> 'normal';"
    } >"$dir/check.sql"
    local out logged
    # A schema this script does not know leaves "?" rather than stopping it.
    out=$(sqlite3 "$db" <"$dir/check.sql" 2>"$dir/check.err" | tr '\n' ' ' || true)
    read -r logged rows hangup nohangup noactions notnormal _ <<<"$out $(printf '? %.0s' 1 2 3 4 5 6)"
    if [ -s "$dir/check.err" ]; then echo "bench-compare: [$tag] sqlite3: $(head -n 3 "$dir/check.err")" >&2; fi
    # The per-call checks mean something only if SIPp logged every answer.
    if [ "$logged" != "$answered" ]; then
      echo "bench-compare: [$tag] warning: SIPp logged $logged answered Call-IDs, its statistics say $answered" >&2
    fi
  fi

  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$round" "$calls:$rate" "$name" "$answered" "$failed" "$cpu" "$rss" "$sipp_cpu" "$busy" "$before" "$others" "${others_who:--}" \
    "$werr" "$rows" "$hangup" "$nohangup" "$noactions" "$notnormal" "$drops" "${detail:--}" "$attempt" >"$dir/row"
  echo "$others" >"$dir/others"
  local db_note=""
  if [ "$name" = voxbridge ]; then
    db_note=", write errors $werr, hangup rows $hangup of $rows, answered without hangup row $nohangup, without action runs $noactions, ended other than normal $notnormal"
  fi
  echo "bench-compare: [$tag] answered $answered failed $failed${detail:+ ($detail)}, CPU ${cpu} s, peak RSS ${rss} MB, SIP datagrams dropped at the server's socket $drops, SIPp CPU ${sipp_cpu} s, others ${others} s${others_who:+ ($others_who)}$db_note" >&2
}

# --- the runs ----------------------------------------------------------------
echo "bench-compare: $(nproc) cores, load average $(loadavg), SIPp $(sipp -v 2>&1 | sed -n 's/.*SIPp \(v[^ -]*\).*/\1/p' | head -n 1), work dir $WORK" >&2
echo "bench-compare: LOADS=\"$LOADS\" ORDER=$ORDER ROUNDS=$ROUNDS HOLD_MS=$HOLD_MS${VB_ARGS:+ VB_ARGS=\"$VB_ARGS\"}${DG_ARGS:+ DG_ARGS=\"$DG_ARGS\"}" >&2
first=1
for round in $(seq 1 "$ROUNDS"); do
  li=0 # the load's index in the round
  for load in $LOADS; do
    calls=${load%%:*}
    rate=${load##*:}
    case "$ORDER" in
    diago-first) servers="diago voxbridge" ;;
    voxbridge-first) servers="voxbridge diago" ;;
    alternate) if [ $(((li + round - 1) % 2)) -eq 0 ]; then servers="diago voxbridge"; else servers="voxbridge diago"; fi ;;
    esac
    li=$((li + 1))
    for s in $servers; do
      # Let the previous run's sockets, timers and page cache settle.
      [ "$first" = 1 ] || sleep "$COOLDOWN"
      first=0
      for attempt in $(seq 1 $((RETRIES + 1))); do
        [ "$attempt" = 1 ] || sleep "$COOLDOWN"
        run_one "$round" "$calls" "$rate" "$s" "$attempt"
        d=$WORK/r${round}-${calls}at${rate}-$s
        [ "$attempt" = 1 ] || d="$d-attempt$attempt"
        o=$(cat "$d/others")
        if awk -v o="$o" -v m="$OTHERS_MAX" 'BEGIN { exit !(o + 0 <= m + 0) }'; then break; fi
        if [ "$attempt" -le "$RETRIES" ]; then
          echo "bench-compare: other processes used $o CPU s during that run (over OTHERS_MAX=$OTHERS_MAX): running it again" >&2
        fi
      done
      cat "$d/row" >>"$RESULTS"
    done
  done
done

# --- the table ---------------------------------------------------------------
# Markdown, so it can go into BENCHMARKS.md as printed.
awk -F'\t' '
  function label(l,   a) { split(l, a, ":"); return a[1] " calls at " a[2] "/s" }
  function ratio(x, y) { return (y + 0 > 0) ? sprintf("%.2f×", x / y) : "?" }
  NR == 1 { next }
  {
    key = $1 SUBSEP $2
    if (!(key in seen)) { seen[key] = 1; keys[++n] = key; rl[n] = $1; ll[n] = $2 }
    row[key, $3] = $0
  }
  END {
    rounds = 0; for (k = 1; k <= n; k++) if (rl[k] + 0 > rounds) rounds = rl[k] + 0
    print "| load | server | answered | failed | server CPU s | peak RSS MB | SIPp CPU s | other CPU s during the run | write errors in the log | hangup rows / answered | answered: no hangup row / no action runs / hung up other than normal |"
    print "|---|---|---|---|---|---|---|---|---|---|---|"
    for (k = 1; k <= n; k++) {
      key = keys[k]
      name = label(ll[k]) (rounds > 1 ? " (round " rl[k] ")" : "")
      first = 1
      for (s = 1; s <= 2; s++) {
        id = (s == 1) ? "diago" : "voxbridge"
        if (!((key, id) in row)) continue
        split(row[key, id], f, "\t")
        cpu[id] = f[6]; rss[id] = f[7]
        fail = f[5] (f[20] != "-" ? " (" f[20] ")" : "")
        if (f[19] + 0 > 0) fail = fail "; " f[19] " SIP datagrams dropped at its socket"
        oth = f[11] (f[12] != "-" ? " (" f[12] ")" : "") (f[21] > 1 ? ", attempt " f[21] : "")
        if (id == "voxbridge") extra = f[13] " | " f[15] " / " f[4] " | " f[16] " / " f[17] " / " f[18]
        else extra = "— | — | —"
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", first ? name : "", (id == "diago" ? "diago echo" : "voxbridge"), f[4], fail, f[6], f[7], f[8], oth, extra
        first = 0
      }
      if (((key, "diago") in row) && ((key, "voxbridge") in row))
        printf "| | **voxbridge / diago** | | | **%s** | **%s** | | | | | |\n", ratio(cpu["voxbridge"], cpu["diago"]), ratio(rss["voxbridge"], rss["diago"])
    }
  }' "$RESULTS"
echo
echo "bench-compare: raw results $RESULTS; logs, databases and SIPp statistics under $WORK" >&2
