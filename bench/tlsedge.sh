#!/usr/bin/env bash
# tlsedge with sticky cookies on (the default chain): peer.sh under the name
# the harness shows in its report.
exec "$(dirname "${BASH_SOURCE[0]}")/peer.sh" "$@"
