#!/usr/bin/env bash
# wake-cost.sh [BIN...]: the proxy CPU a request costs when its connection
# was silent longer than tlsedge's parkAfter (100 ms), so that every request
# wakes a parked connection (issue 7, docs/performance.md). For each binary
# (default: <repo>/bin/tlsedge), on the shared harness's setup (proxy on
# core 0, GOMAXPROCS=1; loader and nginx origin on core 1): bench/gapload
# holds C keep-alive connections that each send a GET every GAP for DUR; the
# proxy's utime+stime over that time, divided by the requests answered.
# Compare a build before and after a change: wake-cost.sh bin/tlsedge-prev bin/tlsedge
#   env: C=500 GAP=150ms DUR=20s ROUNDS=3 (binaries alternate within a round)
#   OUT=/tmp/tlsedge-wake-cost
set -uo pipefail # not -e: lib.sh's stop_pidfile reaps with a failing wait
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_DIR=${BENCH_HARNESS:-$REPO/../shared/bench}
source "$BENCH_DIR/lib.sh"
C=${C:-500} GAP=${GAP:-150ms} DUR=${DUR:-20s} ROUNDS=${ROUNDS:-3}
OUT=${OUT:-/tmp/tlsedge-wake-cost}
export PORT=${PORT:-8443} PROXY_CPU LOADER_CPU
export BACKEND_PORTS=${BACKEND_PORTS:-"9001 9002"}
BINS=("$@")
((${#BINS[@]})) || BINS=("$REPO/bin/tlsedge")
ulimit -n "$(ulimit -Hn)"
rm -rf "$OUT"; mkdir -p "$OUT"
(cd "$REPO" && go build -o "$OUT/gapload" ./bench/gapload) || exit 1
CERT_DIR=$("$BENCH_DIR/certs/gen.sh" "$OUT/certs")
export BACKEND_WORKDIR=$OUT/backend
cleanup() {
	[[ -f $OUT/proxy/proxy.pid ]] && stop_pidfile "$OUT/proxy/proxy.pid"
	WORKDIR=$BACKEND_WORKDIR "$BENCH_DIR/backend/backend.sh" stop 2> /dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
WORKDIR=$BACKEND_WORKDIR "$BENCH_DIR/backend/backend.sh" start
backends=$(for p in $BACKEND_PORTS; do printf '127.0.0.1:%s,' "$p"; done)
for ((r = 1; r <= ROUNDS; r++)); do
	for bin in "${BINS[@]}"; do
		w=$OUT/proxy; rm -rf "$w"; mkdir -p "$w/state"
		GOMAXPROCS=1 WORKDIR=$w start_bg proxy "$PROXY_CPU" "$bin" run --max-conns-per-ip -1 --max-handshakes-per-ip -1 \
			--cert "$CERT_DIR/ecdsa.crt" --key "$CERT_DIR/ecdsa.key" --state-dir "$w/state" --access-log "$w/access.log" \
			--log-level warn --listen "127.0.0.1:$PORT" --http-listen off --app "127.0.0.1=${backends%,};sticky"
		wait_port "$PORT"
		pid=$(cat "$w/proxy.pid")
		timeout 120 taskset -c "$LOADER_CPU" "$OUT/gapload" -addr "127.0.0.1:$PORT" -c "$C" -gap "$GAP" -d "$DUR" > "$w/gapload.txt" 2>&1 &
		lp=$!
		for ((i = 0; i < 600; i++)); do grep -q '^START' "$w/gapload.txt" && break; sleep 0.1; done
		t0=$(tree_ticks "$pid")
		wait "$lp"
		t1=$(tree_ticks "$pid")
		stop_pidfile "$w/proxy.pid"
		awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v bin="$bin" -v r="$r" '/^requests/ {
			printf "round %d %-40s requests %d errors %d proxy_cpu %.2fs  %.1f us/request\n", r, bin, $2, $4, (b-a)/hz, 1e6*(b-a)/hz/$2 }' "$w/gapload.txt" | tee -a "$OUT/wake-cost.txt"
	done
done
