#!/usr/bin/env bash
# bench.sh -- tlsedge side by side with haproxy and goref on the shared harness
# (${BENCH_HARNESS:-<repo>/../shared/bench}, see its README.md). `make bench`
# runs it after `make build`; it builds nothing of ours, it measures
# ${TLSEDGE_BIN:-<repo>/bin/tlsedge} as two peers: "tlsedge" (sticky sessions on,
# bench/tlsedge.sh -> peer.sh) and "tlsedge-nosticky" (bench/tlsedge-nosticky.sh), plus
# haproxy, goref and the harness's "direct" (no proxy) baseline.
#
# env (passed through to the harness): ROUNDS=3 DUR=8 SCENARIOS="S1 S2 S2res S3 S4 S5"
#   S5_CONNS="2000 10000" BACKEND=nginx|go ... (see the harness README)
#   RESULTS_DIR=<repo>/bench/results  STAMP=tlsedge-YYYYmmdd-HHMM
#   PEERS="tlsedge tlsedge-nosticky haproxy goref" (the default): names of
#   bench/tlsedge*.sh peers of ours (tlsedge-health, tlsedge-tcp) or of the
#   harness's (haproxy, goref, stunnel, nginx, caddy-apt: Debian's caddy,
#   caddy: a caddy binary installed by hand in /opt/peers/bin)
#   DOCS=1 (as make bench sets it): copy the report to docs/results/ and put its
#   tables into docs/performance.md (bench/docs_table.py)
# Quick smoke test (~2 min): ROUNDS=1 DUR=2 S5_CONNS=300 STAMP=smoke bench/bench.sh
# Issue 4's comparisons: PEERS="tlsedge-nosticky tlsedge-health" SCENARIOS=S1 and
#   PEERS="tlsedge-tcp stunnel" SCENARIOS="S2 S3" bench/bench.sh
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${BENCH_HARNESS:-$REPO/../shared/bench}
[[ -x $HARNESS/run.sh ]] || { echo "bench: no harness at $HARNESS (set BENCH_HARNESS)" >&2; exit 1; }
HARNESS=$(cd "$HARNESS" && pwd)
export TLSEDGE_BIN=${TLSEDGE_BIN:-$REPO/bin/tlsedge}
[[ -x $TLSEDGE_BIN ]] || { echo "bench: no $TLSEDGE_BIN; run make build first" >&2; exit 1; }

# Debian packages the harness runs: the haproxy peer, the loaders (wrk, h2load),
# openssl for its certificates, and nginx as the default origin (BACKEND=nginx;
# BACKEND=go uses the harness's own Go origin instead).
PEERS=${PEERS:-tlsedge tlsedge-nosticky haproxy goref}
declare -A need=([wrk]=wrk [h2load]=nghttp2-client [openssl]=openssl [taskset]=util-linux)
[[ " $PEERS " != *" haproxy "* ]] || need[haproxy]=haproxy
[[ " $PEERS " != *" stunnel "* ]] || need[stunnel4]=stunnel4
[[ " $PEERS " != *" caddy-apt "* ]] || need[caddy]=caddy
[[ " $PEERS " != *" nginx "* ]] || need[nginx]=nginx
[[ ${BACKEND:-nginx} == go ]] || need[nginx]=nginx
missing=()
for cmd in "${!need[@]}"; do command -v "$cmd" > /dev/null 2>&1 || missing+=("${need[$cmd]}"); done
if ((${#missing[@]})); then
	echo "bench: installing ${missing[*]}" >&2
	if [[ $(id -u) == 0 ]]; then SUDO=(); else SUDO=(sudo); fi
	"${SUDO[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}"
fi

export RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results}
export STAMP=${STAMP:-tlsedge-$(date +%Y%m%d-%H%M)}
# ROUNDS, DUR, SCENARIOS, S5_CONNS and the harness's other knobs pass through the environment.
mkdir -p "$RESULTS_DIR"
rc=0
peers=()
for p in $PEERS; do
	if [[ -x $REPO/bench/$p.sh ]]; then peers+=("$REPO/bench/$p.sh"); else peers+=("$p"); fi
done
"$HARNESS/run.sh" "${peers[@]}" || rc=$?
if [[ -s $RESULTS_DIR/$STAMP.md ]]; then
	echo "bench: report $RESULTS_DIR/$STAMP.md (raw: $RESULTS_DIR/raw/$STAMP.csv; logs: ${RUN_DIR:-/tmp/bench-run-$STAMP})"
	# DOCS=1 (make bench): the report and its CSV go to docs/results/, and
	# its medians and ratios replace the "latest make bench" block of
	# docs/performance.md.
	if [[ ${DOCS:-0} == 1 ]]; then
		cp "$RESULTS_DIR/$STAMP.md" "$REPO/docs/results/$STAMP.md"
		cp "$RESULTS_DIR/raw/$STAMP.csv" "$REPO/docs/results/$STAMP.csv"
		python3 "$REPO/bench/docs_table.py" "$REPO/docs/results/$STAMP.md" "$REPO/docs/performance.md" "results/$STAMP.md" &&
			echo "bench: docs/performance.md updated with $STAMP"
	fi
else
	echo "bench: no report (harness exit $rc); logs in ${RUN_DIR:-/tmp/bench-run-$STAMP}" >&2
	((rc)) || rc=1
fi
exit "$rc"
