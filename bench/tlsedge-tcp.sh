#!/usr/bin/env bash
# tlsedge's TCP mode (TLS in, bytes out), to compare with stunnel.
MODE=tcp exec "$(dirname "${BASH_SOURCE[0]}")/peer.sh" "$@"
