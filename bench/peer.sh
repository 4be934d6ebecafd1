#!/usr/bin/env bash
# tlsedge as a peer of the benchmark harness (../shared/bench, contract in its
# peers/_template.sh). Builds nothing: runs ${TLSEDGE_BIN:-<repo>/bin/tlsedge}
# (make build), one core, GOMAXPROCS=1, access log to a file as in production.
# env: STICKY=0 drops ";sticky" from the app (tlsedge-nosticky.sh does that).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-${BENCH_HARNESS:-$REPO/../shared/bench}}
source "$BENCH_DIR/lib.sh"
TLSEDGE_BIN=${TLSEDGE_BIN:-$REPO/bin/tlsedge}
STICKY=${STICKY:-1}
case ${1:-} in
start)
	[[ -x $TLSEDGE_BIN ]] || { log "no tlsedge binary at $TLSEDGE_BIN (run make build)"; exit 1; }
	mkdir -p "$WORKDIR/state"
	app="127.0.0.1=$BACKENDS"
	[[ $STICKY == 0 ]] || app+=";sticky"
	GOMAXPROCS=1 start_bg proxy "$PROXY_CPU" "$TLSEDGE_BIN" run \
		--listen "127.0.0.1:$PORT" --http-listen off \
		--cert "$CERT" --key "$KEY" \
		--state-dir "$WORKDIR/state" \
		--access-log "$WORKDIR/access.log" \
		--log-level warn \
		--app "$app"
	wait_port "$PORT"
	;;
stop) stop_pidfile "$WORKDIR/proxy.pid" ;;
version)
	v=$("$TLSEDGE_BIN" version 2>&1 | head -1) || v="(no binary at $TLSEDGE_BIN)"
	[[ $v == tlsedge* ]] || v="tlsedge $v"
	echo "$v, $([[ $STICKY == 0 ]] && echo "no sticky" || echo sticky)"
	;;
caps) echo "S1 S2 S2res S3 S4 S5" ;;
*) echo "usage: $0 start|stop|version|caps" >&2; exit 2 ;;
esac
