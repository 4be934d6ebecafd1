#!/usr/bin/env bash
# idle-load.sh [PEER...]: issue 7's "10,000 idle TLS connections + S1 load at
# once". For each peer (default: tlsedge haproxy), on the shared harness's
# setup (proxy on core 0, loader and nginx origin on core 1, same certificate):
#   1. S1 alone: wrk -t1 -c64 --latency for DUR seconds;
#   2. IDLE (10000) keep-alive TLS connections opened by the harness's
#      idleconns (handshake + one GET each, then idle) and held;
#   3. S1 again with them held;
# and prints req/s, p50, p99, errors of both and the p99 ratio (target:
# within 2x, no error). Results: $OUT/idle-load.txt (default
# /tmp/tlsedge-idle-load). Every loop is bounded; processes are stopped by
# the PID files the harness's lib.sh keeps.
#   env: DUR=8 IDLE=10000 ROUNDS=1 TLSEDGE_BIN=<repo>/bin/tlsedge
set -uo pipefail # not -e: lib.sh's stop_pidfile reaps with a failing wait
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_DIR=${BENCH_HARNESS:-$REPO/../shared/bench}
source "$BENCH_DIR/lib.sh"
export TLSEDGE_BIN=${TLSEDGE_BIN:-$REPO/bin/tlsedge}
DUR=${DUR:-8} IDLE=${IDLE:-10000} ROUNDS=${ROUNDS:-1}
OUT=${OUT:-/tmp/tlsedge-idle-load}
export PORT=${PORT:-8443} PROXY_CPU LOADER_CPU
export BACKEND_PORTS=${BACKEND_PORTS:-"9001 9002"}
PEERS=("$@")
((${#PEERS[@]})) || PEERS=(tlsedge haproxy)
peer_sh() { if [[ -x $REPO/bench/$1.sh ]]; then echo "$REPO/bench/$1.sh"; else echo "$BENCH_DIR/peers/$1.sh"; fi; }

# 10,000 client connections and as many inside the proxy: raise the fd limit.
ulimit -n "$(ulimit -Hn)"
rm -rf "$OUT"; mkdir -p "$OUT"
mkdir -p "$BIN_DIR"
(cd "$BENCH_DIR/go" && go build -o "$BIN_DIR/idleconns" ./idleconns)
CERT_DIR=$("$BENCH_DIR/certs/gen.sh" "$OUT/certs")
export BACKEND_WORKDIR=$OUT/backend
cleanup() {
	local f
	for f in "$OUT"/*/proxy.pid "$OUT"/idle.pid; do [[ -f $f ]] && stop_pidfile "$f"; done
	WORKDIR=$BACKEND_WORKDIR "$BENCH_DIR/backend/backend.sh" stop 2> /dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
WORKDIR=$BACKEND_WORKDIR "$BENCH_DIR/backend/backend.sh" start
BACKENDS=$(for p in $BACKEND_PORTS; do printf '127.0.0.1:%s,' "$p"; done); export BACKENDS=${BACKENDS%,}

# s1 LABEL: one wrk run; prints "rps p50 p99 errors" (ms).
s1() {
	local out=$WORKDIR/wrk-$1.txt
	timeout $((DUR + 30)) taskset -c "$LOADER_CPU" wrk -t1 -c64 -d"${DUR}s" --latency "https://127.0.0.1:$PORT/small" > "$out" 2>&1 || true
	awk '
		function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return -1 }
		/^Requests\/sec/ {rps = $2}
		/^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)}
		/Socket errors/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10}
		/Non-2xx/ {e += $NF}
		END {printf "%s %.2f %.2f %d\n", rps, p50, p99, e}' "$out"
}

printf "%-10s %5s | %10s %8s %8s %6s | %8s %10s %8s %8s %6s | %9s\n" peer round "alone r/s" p50_ms p99_ms errs idle "with r/s" p50_ms p99_ms errs p99_ratio | tee "$OUT/idle-load.txt"
for ((r = 1; r <= ROUNDS; r++)); do
	for peer in "${PEERS[@]}"; do
		export WORKDIR=$OUT/$peer-r$r CERT=$CERT_DIR/ecdsa.crt KEY=$CERT_DIR/ecdsa.key PEM=$CERT_DIR/ecdsa.pem
		mkdir -p "$WORKDIR"
		"$(peer_sh "$peer")" start
		timeout 10 taskset -c "$LOADER_CPU" wrk -t1 -c16 -d1s "https://127.0.0.1:$PORT/small" > /dev/null 2>&1 || true
		read -r a_rps a_p50 a_p99 a_err < <(s1 alone)
		GOMAXPROCS=1 taskset -c "$LOADER_CPU" "$BIN_DIR/idleconns" -addr "127.0.0.1:$PORT" -n "$IDLE" -c 16 -hold 300s > "$WORKDIR/idle.txt" 2>&1 < /dev/null &
		echo $! > "$OUT/idle.pid"
		for ((i = 0; i < 1200; i++)); do grep -q '^READY' "$WORKDIR/idle.txt" && break; sleep 0.1; done
		held=$(awk '/^READY/{print $2}' "$WORKDIR/idle.txt")
		sleep 2
		read -r w_rps w_p50 w_p99 w_err < <(s1 with-idle)
		stop_pidfile "$OUT/idle.pid"
		"$(peer_sh "$peer")" stop
		ratio=$(awk -v a="$a_p99" -v b="$w_p99" 'BEGIN{ if (a > 0) printf "%.2f", b / a; else print "-" }')
		printf "%-10s %5s | %10s %8s %8s %6s | %8s %10s %8s %8s %6s | %9s\n" "$peer" "$r" "$a_rps" "$a_p50" "$a_p99" "$a_err" "${held:-0}" "$w_rps" "$w_p50" "$w_p99" "$w_err" "$ratio" | tee -a "$OUT/idle-load.txt"
		sleep 1
	done
done
