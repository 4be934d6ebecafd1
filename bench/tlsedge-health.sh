#!/usr/bin/env bash
# tlsedge without sticky cookies, with active health checks and the
# least-requests balancer: issue 4's "within 5% of round robin" peer.
STICKY=0 APP_OPTS=";health=/small;health_interval=1s;balance=leastreq" exec "$(dirname "${BASH_SOURCE[0]}")/peer.sh" "$@"
