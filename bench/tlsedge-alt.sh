#!/usr/bin/env bash
# tlsedge (sticky, as bench/tlsedge.sh) from a third build, $TLSEDGE_ALT_BIN,
# for an A/B/C within one harness run next to tlsedge and tlsedge-prev:
#   TLSEDGE_ALT_BIN=bin/tlsedge-x PEERS="tlsedge tlsedge-prev tlsedge-alt" bench/bench.sh
TLSEDGE_BIN=${TLSEDGE_ALT_BIN:?set TLSEDGE_ALT_BIN to the build to measure} \
	exec "$(dirname "${BASH_SOURCE[0]}")/peer.sh" "$@"
