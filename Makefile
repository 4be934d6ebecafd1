# tlsedge — build, try, test, measure.
#   make demo    run tlsedge on an embedded default (local CA, demo backends)
#   make test    install what the tests need, then vet + race tests + short fuzz pass
#   make bench   side-by-side benchmark against haproxy and goref (../shared/bench)
#   make lint    gofmt, go vet, staticcheck

GO        ?= go
# A count, not a duration: a duration -fuzztime races Go 1.26's fuzz
# coordinator on a loaded machine ("context deadline exceeded" with no
# crasher, golang/go#75804, fixed in Go 1.27).
FUZZTIME  ?= 100000x
BIN       := bin/tlsedge
# Debian packages the tests run for real: curl runs the demo's printed
# command, redis-server backs the shared ACME storage, testssl.sh audits
# the TLS listener, libssl-dev builds the -tags openssl variant, chromium
# renders the status page. (Pebble, the ACME test CA, and h2spec, the HTTP/2
# conformance suite, are built from go.mod's tool directives by the tests
# themselves.)
TEST_DEBS := curl redis-server testssl.sh libssl-dev chromium

# Every fuzz target: package:Target.
FUZZ_TARGETS := \
	./config:FuzzParseApp \
	./config:FuzzParse \
	./config:FuzzParseTCP \
	./session:FuzzDecode \
	./session:FuzzLoadKeyFile \
	./session:FuzzQueryParam \
	./certs:FuzzLoadPair \
	./certs:FuzzHostName \
	./certs:FuzzOnDemandDecide \
	./certs:FuzzParseAutocertEntry \
	./tlsedge:FuzzStripCookie \
	./tlsedge:FuzzRequestHead \
	./tlsedge:FuzzH2Guard \
	./upstream:FuzzReadResponseHead \
	./upstream:FuzzChunkedBody \
	./upstream:FuzzReadProxyHeader \
	./httpsyntax:FuzzParseChunkSize \
	./filter:FuzzSaneID \
	./filter:FuzzRewriteLocation \
	./filter:FuzzParsePrefix \
	./filter:FuzzParseHeaderRule \
	./filter:FuzzSubst \
	./filter:FuzzParseSubstRule \
	./filter:FuzzRealIP \
	./filter:FuzzNormalizePath \
	./filter:FuzzAcceptEncoding \
	./logsink:FuzzAccessTemplate

.PHONY: build build-openssl demo test test-deps vet unit fuzz bench lint clean

build:
	$(GO) build -o $(BIN) ./cmd/tlsedge

# The variant whose RSA signatures go through OpenSSL's libcrypto (cgo,
# libssl-dev to build, libcrypto3 to run): 4x faster RSA handshakes.
build-openssl:
	CGO_ENABLED=1 $(GO) build -tags openssl -o $(BIN)-openssl ./cmd/tlsedge

demo:
	$(GO) run ./cmd/tlsedge demo

test: test-deps vet unit fuzz

# Install missing Debian packages (CI and fresh machines run as root).
test-deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...
	@echo "the end-to-end tests again with HTTP/2 clients (net/http's server instead of ours):"
	TLSEDGE_TEST_H2=1 $(GO) test -race -count=1 -skip 'ACME|OnDemand|Autocert|Slowloris|TestSSL|H2Spec|Probes' ./tlsedge/
	@echo "the libcrypto RSA signer (-tags openssl) and the TCP mode and handshakes built with it:"
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags openssl -run 'OpenSSL|TCP|StaticCertificates|RSA' ./certs/ ./tlsedge/
	@echo "1 GiB streaming and allocation tests without -race (memory bounds are asserted there):"
	TLSEDGE_FULL_STREAM=1 $(GO) test -count=1 -timeout 15m -run 'GiB|Allocations' ./upstream/ ./tlsedge/

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

bench: build
	bench/bench.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

clean:
	rm -rf bin
