#!/usr/bin/env bash
# profile.sh [S1|S3|S4|S2] [extra tlsedge flags...]: one scenario of the harness
# against tlsedge alone (one core, GOMAXPROCS=1), with a CPU and an
# allocation profile. Prints the rate and the top of both profiles; the
# profiles stay in $OUT (default /tmp/tlsedge-profile).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_DIR=${BENCH_HARNESS:-$REPO/../shared/bench}
source "$BENCH_DIR/lib.sh"
SCEN=${1:-S1}; shift || true
OUT=${OUT:-/tmp/tlsedge-profile}
DUR=${DUR:-8}
STICKY=${STICKY:-1}
TLSEDGE_BIN=${TLSEDGE_BIN:-$REPO/bin/tlsedge}
PROXY_CPU=${PROXY_CPU:-0} LOADER_CPU=${LOADER_CPU:-1}
export LOADER_CPU
rm -rf "$OUT"; mkdir -p "$OUT"
export WORKDIR=$OUT/backend BIN_DIR=${BIN_DIR:-/tmp/bench-bin}
"$BENCH_DIR/certs/gen.sh" "$OUT/certs" > /dev/null
"$BENCH_DIR/backend/backend.sh" start
trap '"$BENCH_DIR/backend/backend.sh" stop; stop_pidfile "$OUT/proxy.pid" 2>/dev/null || true' EXIT
app="127.0.0.1=127.0.0.1:9001,127.0.0.1:9002"
[[ $STICKY == 0 ]] || app+=";sticky"
WORKDIR=$OUT TLSEDGE_CPUPROFILE=$OUT/cpu.prof TLSEDGE_MEMPROFILE=$OUT/mem.prof GOMAXPROCS=1 \
	start_bg proxy "$PROXY_CPU" "$TLSEDGE_BIN" run --listen 127.0.0.1:8443 --http-listen off \
	--cert "$OUT/certs/ecdsa.crt" --key "$OUT/certs/ecdsa.key" --state-dir "$OUT/state" \
	--access-log "$OUT/access.log" --log-level warn --app "$app" "$@"
wait_port 8443
url=https://127.0.0.1:8443
timeout 10 taskset -c "$LOADER_CPU" wrk -t1 -c16 -d1s "$url/small" > /dev/null
# COOKIE=1: every request carries a valid sticky cookie (the hit path:
# one decode per request), as a returning browser's would.
wrkargs=()
if [[ ${COOKIE:-0} == 1 ]]; then
	c=$(curl -sk -o /dev/null -D - "$url/small" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' | head -1)
	[[ -n $c ]] || { echo "no sticky cookie from $url" >&2; exit 1; }
	wrkargs=(-H "Cookie: $c")
fi
case $SCEN in
S1) timeout $((DUR + 10)) taskset -c "$LOADER_CPU" wrk -t1 -c64 -d"${DUR}s" --latency "${wrkargs[@]}" "$url/small" ;;
S3) timeout $((DUR + 10)) taskset -c "$LOADER_CPU" wrk -t1 -c16 -d"${DUR}s" "$url/large" ;;
S4) timeout $((DUR + 10)) taskset -c "$LOADER_CPU" h2load -t1 -c32 -m10 -D "$DUR" "$url/small" | grep -E 'finished in|requests:|status codes' ;;
S2) timeout $((DUR + 10)) taskset -c "$LOADER_CPU" env GOMAXPROCS=1 "$BIN_DIR/hsload" -addr 127.0.0.1:8443 -c 64 -d "${DUR}s" ;;
esac
stop_pidfile "$OUT/proxy.pid"
trap '"$BENCH_DIR/backend/backend.sh" stop' EXIT
go tool pprof -top -nodecount=35 "$TLSEDGE_BIN" "$OUT/cpu.prof" 2>/dev/null | head -45
echo "--- allocations (alloc_space) ---"
go tool pprof -sample_index=alloc_space -top -nodecount=15 "$TLSEDGE_BIN" "$OUT/mem.prof" 2>/dev/null | sed -n 5,22p
