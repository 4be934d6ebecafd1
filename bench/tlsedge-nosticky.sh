#!/usr/bin/env bash
# tlsedge without sticky sessions; a separate file so the report names it apart.
STICKY=0 exec "$(dirname "${BASH_SOURCE[0]}")/peer.sh" "$@"
