#!/usr/bin/env bash
# gofloor as a peer of the benchmark harness: the floor of Go's runtime and
# crypto/tls for S1 (bench/gofloor), GOMAXPROCS=1, S1 only. Builds it into
# $BIN_DIR on start.
#   PEERS="tlsedge gofloor haproxy" SCENARIOS=S1 bench/bench.sh
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-${BENCH_HARNESS:-$REPO/../shared/bench}}
source "$BENCH_DIR/lib.sh"
case ${1:-} in
start)
	(cd "$REPO" && go build -o "$BIN_DIR/gofloor" ./bench/gofloor)
	GOMAXPROCS=1 start_bg proxy "$PROXY_CPU" "$BIN_DIR/gofloor" -listen "127.0.0.1:$PORT" \
		-backends "$BACKENDS" -cert "$CERT" -key "$KEY"
	wait_port "$PORT"
	;;
stop) stop_pidfile "$WORKDIR/proxy.pid" ;;
version) echo "gofloor ($(go version | awk '{print $3}'))" ;;
caps) echo "S1" ;;
esac
