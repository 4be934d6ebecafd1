#!/usr/bin/env bash
# cpu-per-request.sh [h1|h2] [PEER...]: where each proxy's CPU goes per
# request. For each peer (default: tlsedge haproxy), on the shared
# harness's setup (proxy on core 0, loader and nginx origin on core 1),
# S1 (wrk -t1 -c64, HTTP/1.1) or S4 (h2load -t1 -c32 -m10) runs for DUR
# seconds while `perf record -C 0` samples core 0 for 4 s in the middle.
# It prints, per request, the microseconds the proxy spent in user space
# and in the kernel (its system calls and the loopback network work they
# do), from the sample shares and the request rate. The machine has no
# hardware counters (a VM): these are cpu-clock samples, and the
# user/kernel split is steadier from run to run than the rate is.
# LOADER=1 samples the loader's core too and prints what each request
# costs there (wrk or h2load and the nginx origin, user and kernel): when
# the loader's core is the one at 100 %, that is what bounds the rate, and
# a proxy that sends more bytes or wakes the loader more often lowers it.
# SYSCALLS=1 counts system calls per request instead (syscall
# tracepoints on core 0, which slow every call: the rate drops, the
# counts per request do not): reads, writes, the ones that found nothing
# (EAGAIN), polls.
# Results: $OUT/<peer>-<mode>/ (perf.data or stat.txt, the loader's output).
#   env: DUR=8 ROUNDS=1 SYSCALLS=0 LOADER=0 TLSEDGE_BIN=<repo>/bin/tlsedge OUT=/tmp/tlsedge-cpu
set -uo pipefail # not -e: lib.sh's stop_pidfile reaps with a failing wait
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_DIR=${BENCH_HARNESS:-$REPO/../shared/bench}
source "$BENCH_DIR/lib.sh"
export TLSEDGE_BIN=${TLSEDGE_BIN:-$REPO/bin/tlsedge}
MODE=${1:-h1}; shift || true
DUR=${DUR:-8} ROUNDS=${ROUNDS:-1}
OUT=${OUT:-/tmp/tlsedge-cpu}
export PORT=${PORT:-8443} PROXY_CPU LOADER_CPU BACKENDS=127.0.0.1:9001,127.0.0.1:9002
PEERS=("$@")
((${#PEERS[@]})) || PEERS=(tlsedge haproxy)
peer_sh() { if [[ -x $REPO/bench/$1.sh ]]; then echo "$REPO/bench/$1.sh"; else echo "$BENCH_DIR/peers/$1.sh"; fi; }
command -v perf > /dev/null || { echo "cpu-per-request: perf is missing (apt-get install -y linux-perf)" >&2; exit 1; }
mkdir -p "$OUT" "$BIN_DIR"
url=https://127.0.0.1:$PORT

one() { # one PEER: load, sample, print a line
	local peer=$1 dir=$OUT/$1-$MODE rate lp
	rm -rf "$dir"; mkdir -p "$dir"
	export WORKDIR=$dir
	"$BENCH_DIR/certs/gen.sh" "$dir/certs" > /dev/null
	export CERT=$dir/certs/ecdsa.crt KEY=$dir/certs/ecdsa.key PEM=$dir/certs/ecdsa.pem
	(export WORKDIR=$dir/backend; mkdir -p "$WORKDIR"; "$BENCH_DIR/backend/backend.sh" start)
	"$(peer_sh "$peer")" start
	timeout 10 taskset -c "$LOADER_CPU" wrk -t1 -c16 -d1s "$url/small" > /dev/null
	if [[ $MODE == h1 ]]; then
		timeout $((DUR + 10)) taskset -c "$LOADER_CPU" wrk -t1 -c64 -d"${DUR}s" "$url/small" > "$dir/load.txt" &
	else
		timeout $((DUR + 10)) taskset -c "$LOADER_CPU" h2load -t1 -c32 -m10 -D "$DUR" "$url/small" > "$dir/load.txt" &
	fi
	lp=$!
	sleep 2
	if [[ ${SYSCALLS:-0} == 1 ]]; then
		local cpus=$PROXY_CPU
		[[ ${LOADER:-0} != 1 ]] || cpus+=",$LOADER_CPU"
		perf stat -C "$cpus" --per-core -o "$dir/stat.txt" \
			-e syscalls:sys_enter_read -e syscalls:sys_enter_recvfrom \
			-e syscalls:sys_exit_read --filter 'ret == -11' -e syscalls:sys_exit_recvfrom --filter 'ret == -11' \
			-e syscalls:sys_enter_write -e syscalls:sys_enter_sendto -e syscalls:sys_enter_writev \
			-e syscalls:sys_enter_epoll_wait -e syscalls:sys_enter_epoll_pwait -e syscalls:sys_enter_epoll_ctl \
			-e syscalls:sys_enter_futex -- sleep 4 > /dev/null 2>&1
	elif [[ ${LOADER:-0} == 1 ]]; then
		perf record -q -C "$PROXY_CPU,$LOADER_CPU" -o "$dir/perf.data" -- sleep 4 > /dev/null 2>&1
	else
		perf record -q -C "$PROXY_CPU" -o "$dir/perf.data" -- sleep 4 > /dev/null 2>&1
	fi
	wait $lp
	"$(peer_sh "$peer")" stop
	(export WORKDIR=$dir/backend; "$BENCH_DIR/backend/backend.sh" stop)
	if [[ $MODE == h1 ]]; then
		rate=$(awk '/^Requests\/sec/{print $2}' "$dir/load.txt")
	else
		rate=$(awk '/finished in/{print $4}' "$dir/load.txt")
	fi
	if [[ ${SYSCALLS:-0} == 1 ]]; then
		# sys_exit_* with the filter count the calls that returned EAGAIN.
		# --per-core lines: S0-D0-C<core> <cpus> <count> <event>.
		awk -v r="$rate" -v p="$peer" -v mode="$MODE" -v pc="$PROXY_CPU" '
			/syscalls:sys_/ { core = $1; sub(".*-C", "", core); n = $3; gsub(",", "", n); k = $4; sub("syscalls:sys_", "", k)
				if (n > 0) { s = sprintf("  %s %.2f", k, n / (r * 4)); if (core == pc) out = out s; else lo = lo s } }
			END { printf "%-14s %-3s %9.0f req/s   per request:%s\n", p, mode, r, out; if (lo != "") printf "%-14s %-3s %9s         loader core:%s\n", "", "", "", lo }' "$dir/stat.txt"
		return
	fi
	if [[ ${LOADER:-0} == 1 ]]; then
		# Two cores sampled: a share of all samples is 2 core-seconds per
		# second. Core 0 as below; core 1 split into the loader and nginx.
		perf report -i "$dir/perf.data" --no-children --sort cpu,comm,dso -g none -q --stdio 2> /dev/null |
			awk -v r="$rate" -v p="$peer" -v mode="$MODE" -v pc="$PROXY_CPU" '
			$3 != "swapper" && $3 != "perf" && $3 !~ /^(k|rcu_|migration)/ {
				x = $1; sub("%", "", x); us = 2 * x / 100 * 1e6 / r; kern = ($4 ~ /kernel/)
				if ($2 == pc) { if (kern) k += us; else u += us; next }
				who = ($3 ~ /^nginx/) ? "n" : "l"
				if (kern) lk[who] += us; else lu[who] += us
			}
			END { printf "%-14s %-3s %9.0f req/s   proxy %5.2f+%5.2f us   loader %5.2f+%5.2f us   nginx %5.2f+%5.2f us   loader core %5.2f us per request (user+kernel)\n", p, mode, r, u, k, lu["l"], lk["l"], lu["n"], lk["n"], lu["l"] + lk["l"] + lu["n"] + lk["n"] }'
		return
	fi
	# Shares of core 0's samples by command and object, over 4 s: the
	# proxy's user space (its binary, libc, libssl, libcrypto, vdso) and
	# its kernel time; idle (swapper) and other tasks are left out.
	perf report -i "$dir/perf.data" --no-children --sort comm,dso -g none -q --stdio 2> /dev/null |
		awk -v r="$rate" -v p="$peer" -v mode="$MODE" '
		$2 != "swapper" && $2 != "perf" && $2 !~ /^(k|rcu_|migration)/ {
			x = $1; sub("%", "", x); us = x / 100 * 1e6 / r; if ($3 ~ /kernel/) k += us; else u += us
		}
		END { printf "%-14s %-3s %9.0f req/s   user %5.2f us   kernel %5.2f us   total %5.2f us per request\n", p, mode, r, u, k, u + k }'
}

for ((round = 1; round <= ROUNDS; round++)); do
	for p in "${PEERS[@]}"; do
		one "$p"
	done
done | tee "$OUT/cpu-per-request-$MODE.txt"
