# tlsedge — build, try, test, measure.
#   make demo    run tlsedge on an embedded default (local CA, demo backends)
#   make test    install what the tests need, then lint (gofmt, vet, staticcheck) + race tests + short fuzz pass
#                + benchmark smoke run (bench-smoke)
#   make bench   side-by-side benchmark against haproxy, nginx, caddy and goref (../shared/bench),
#                tables into docs/performance.md
#   make bench-micro  Go micro-benchmarks of the hot pieces, as a table
#   make bench-smoke  tlsedge vs goref (a naive Go proxy), S1 and S4, 2 s each;
#                fails only if tlsedge is below 1.0x goref
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
# renders the status page, wrk and h2load (nghttp2-client) load the
# benchmark smoke run. (Pebble, the ACME test CA, and h2spec, the HTTP/2
# conformance suite, are built from go.mod's tool directives by the tests
# themselves.)
TEST_DEBS := curl redis-server testssl.sh libssl-dev chromium wrk nghttp2-client

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
	./tlsedge:FuzzAppendSafe \
	./tlsedge:FuzzRequestHead \
	./tlsedge:FuzzH2ServerFrames \
	./upstream:FuzzReadResponseHead \
	./upstream:FuzzChunkedBody \
	./upstream:FuzzReadProxyHeader \
	./upstream:FuzzIPv4Host \
	./httpsyntax:FuzzParseChunkSize \
	./httpsyntax:FuzzFieldValueChecks \
	./httpsyntax:FuzzEqualFieldName \
	./filter:FuzzSaneID \
	./filter:FuzzRewriteLocation \
	./filter:FuzzParsePrefix \
	./filter:FuzzParseHeaderRule \
	./filter:FuzzSubst \
	./filter:FuzzParseSubstRule \
	./filter:FuzzRealIP \
	./filter:FuzzNormalizePath \
	./filter:FuzzAcceptEncoding \
	./logsink:FuzzAccessTemplate \
	./logsink:FuzzAppendSeconds

# The micro-benchmarks of make bench-micro, per package: route lookup,
# the filter chain, header rewrites, sticky cookies, balancer picks,
# access-log lines, field-value checks. (A -bench pattern is split at each /: the balancers'
# second level is any balancer, the third serial or parallel.)
MICRO_PKGS     := tlsedge filter session upstream logsink httpsyntax
MICRO_tlsedge  := ^Benchmark(RouteMatch|RouteLookup|AppChain|StickyCookie|StickyNewSession|AccessLogLine|HeaderMap)$$
MICRO_filter   := ^Benchmark(DefaultChain|HeaderRules|ResponseHeaders|ResponseHeadRaw)$$
MICRO_session  := ^Benchmark(Encode|Decode|SetCookie)$$
MICRO_upstream := ^Benchmark(BalancerPick|ResponseHead|RequestHead)$$
MICRO_logsink  := ^BenchmarkAccessFormat$$
MICRO_httpsyntax := ^BenchmarkFieldValue$$
MICRO_BENCHTIME ?= 1s

.PHONY: build build-openssl demo test test-deps vet unit fuzz bench bench-micro bench-smoke lint clean

build:
	$(GO) build -o $(BIN) ./cmd/tlsedge

# The variant whose RSA signatures go through OpenSSL's libcrypto (cgo,
# libssl-dev to build, libcrypto3 to run): 4x faster RSA handshakes.
build-openssl:
	CGO_ENABLED=1 $(GO) build -tags openssl -o $(BIN)-openssl ./cmd/tlsedge

demo:
	$(GO) run ./cmd/tlsedge demo

test: test-deps lint unit fuzz bench-smoke

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
	@echo "the end-to-end tests again with HTTP/2 clients (tlsedge's HTTP/2 server instead of its HTTP/1.1 one):"
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

# The side-by-side comparison issue 7 asks for (tlsedge, haproxy, nginx,
# Debian's caddy, goref); its tables go into docs/performance.md.
bench: build
	DOCS=1 PEERS="$${PEERS:-tlsedge haproxy nginx caddy-apt goref}" bench/bench.sh

# One go test per package (each has its own pattern), its output as it
# comes, then one markdown table: ns/op, B/op, allocs/op.
bench-micro:
	@out=$$(mktemp); failed=$$out.failed; \
	$(foreach p,$(MICRO_PKGS),{ $(GO) test -run '^$$' -bench '$(MICRO_$(p))' -benchmem -benchtime $(MICRO_BENCHTIME) -count 1 ./$(p) || touch $$failed; } | tee -a $$out;) \
	echo; echo "| package | benchmark | ns/op | B/op | allocs/op |"; echo "|---|---|--:|--:|--:|"; \
	awk '/^pkg: / { pkg = $$2; sub(/.*\//, "", pkg) } \
		/^Benchmark.* ns\/op/ { name = $$1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$$/, "", name); ns = b = a = ""; \
			for (i = 3; i < NF; i++) { if ($$(i+1) == "ns/op") ns = $$i; if ($$(i+1) == "B/op") b = $$i; if ($$(i+1) == "allocs/op") a = $$i } \
			printf "| %s | %s | %s | %s | %s |\n", pkg, name, ns, b, a }' $$out; \
	rm -f $$out; if [ -e $$failed ]; then rm -f $$failed; echo "bench-micro: a benchmark failed (see above)"; exit 1; fi

# tlsedge against goref (internal/benchsmoke/goref) on this machine, S1
# (wrk) and S4 (h2load), 2 s each, pinned like the harness: fails only when
# tlsedge is slower than goref in the same run. Under a minute.
bench-smoke:
	$(GO) run ./internal/benchsmoke -go $(GO)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

clean:
	rm -rf bin
