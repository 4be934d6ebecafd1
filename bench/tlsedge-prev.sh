#!/usr/bin/env bash
# tlsedge (sticky, as bench/tlsedge.sh) from another build:
# ${TLSEDGE_PREV_BIN:-<repo>/bin/tlsedge-prev}, e.g. built from a git worktree
# of the parent commit, for an A/B of a change within one harness run
# (rounds interleave the peers):
#   PEERS="tlsedge tlsedge-prev haproxy" bench/bench.sh
TLSEDGE_BIN=${TLSEDGE_PREV_BIN:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/bin/tlsedge-prev"} \
	exec "$(dirname "${BASH_SOURCE[0]}")/peer.sh" "$@"
