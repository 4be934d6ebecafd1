#!/usr/bin/env bash
# tlsedge without sticky cookies and with the default filter chain off
# (no hidden headers, no HSTS, no request id): the baseline of issue 5's
# "the default chain costs at most 10 %".
STICKY=0 APP_OPTS=";hide_headers=none;hsts=off;request_id=off" exec "$(dirname "${BASH_SOURCE[0]}")/peer.sh" "$@"
