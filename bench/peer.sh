#!/usr/bin/env bash
# tlsedge as a peer of the benchmark harness (../shared/bench, contract in its
# peers/_template.sh). Builds nothing: runs ${TLSEDGE_BIN:-<repo>/bin/tlsedge}
# (make build), one core, GOMAXPROCS=1, access log to a file as in production.
# env: STICKY=0 drops ";sticky" from the app (tlsedge-nosticky.sh does that);
# APP_OPTS appends --app options (tlsedge-health.sh: health checks and
# least-requests); MODE=tcp runs the TCP mode (stunnel's job) instead of an
# app (tlsedge-tcp.sh).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-${BENCH_HARNESS:-$REPO/../shared/bench}}
source "$BENCH_DIR/lib.sh"
TLSEDGE_BIN=${TLSEDGE_BIN:-$REPO/bin/tlsedge}
STICKY=${STICKY:-1}
APP_OPTS=${APP_OPTS:-}
MODE=${MODE:-http}
case ${1:-} in
start)
	[[ -x $TLSEDGE_BIN ]] || { log "no tlsedge binary at $TLSEDGE_BIN (run make build)"; exit 1; }
	mkdir -p "$WORKDIR/state"
	app="127.0.0.1=$BACKENDS"
	[[ $STICKY == 0 ]] || app+=";sticky"
	app+=$APP_OPTS
	if [[ $MODE == tcp ]]; then
		# TLS in, plain TCP out, round robin over the backends (stunnel
		# forwards to the first only); no HTTP(S) listener.
		service=(--tcp "127.0.0.1:$PORT=$BACKENDS")
	else
		service=(--listen "127.0.0.1:$PORT" --http-listen off --app "$app")
	fi
	# Every loader connection comes from 127.0.0.1: the per-address
	# limits (1000 connections, 100 handshakes by default) would cap S5
	# at 1000 connections.
	GOMAXPROCS=1 start_bg proxy "$PROXY_CPU" "$TLSEDGE_BIN" run \
		--max-conns-per-ip -1 --max-handshakes-per-ip -1 \
		--cert "$CERT" --key "$KEY" \
		--state-dir "$WORKDIR/state" \
		--access-log "$WORKDIR/access.log" \
		--log-level warn \
		"${service[@]}"
	wait_port "$PORT"
	;;
stop) stop_pidfile "$WORKDIR/proxy.pid" ;;
version)
	v=$("$TLSEDGE_BIN" version 2>&1 | head -1) || v="(no binary at $TLSEDGE_BIN)"
	[[ $v == tlsedge* ]] || v="tlsedge $v"
	if [[ $MODE == tcp ]]; then
		echo "$v, TCP mode"
	else
		echo "$v, $([[ $STICKY == 0 ]] && echo "no sticky" || echo sticky)${APP_OPTS:+, $APP_OPTS}"
	fi
	;;
caps) [[ $MODE == tcp ]] && echo "S1 S2 S2res S3" || echo "S1 S2 S2res S3 S4 S5" ;;
*) echo "usage: $0 start|stop|version|caps" >&2; exit 2 ;;
esac
