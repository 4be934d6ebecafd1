#!/usr/bin/env bash
# tlsedge's TCP mode built with -tags openssl (make build-openssl): RSA
# signatures through libcrypto, the rest of TLS Go's. Compare with
# stunnel on S2 RSA-2048.
TLSEDGE_BIN="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/bin/tlsedge-openssl" MODE=tcp exec "$(dirname "${BASH_SOURCE[0]}")/peer.sh" "$@"
