# tapswitch: a userspace virtual switch for containers.
#   make demo   build, then run the demo on network namespaces (root)
#   make test   formatting, vet, staticcheck, unit and integration tests
#   make deps   install missing tools (apt-get, as root) and Go modules
#   make bench  tapswitch against the Linux bridge (and OVS, vde2), root;
#               ROUNDS=n (default 5), QUICK=1 (one short round), VARIANTS=nooffload
#   make bench-rootless  tapswitch against slirp4netns and pasta, run as nobody
#   make fuzz   every fuzz target in turn, FUZZTIME each (default 1m); ONLY=regexp
#   make soak   attach/detach, connections, a MAC flood and captures for
#               DURATION (default 10m), sampling RSS, goroutines, fds (root)

GO          ?= go
BIN         := bin/tapswitch
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
TESTFLAGS   ?= -race -count=1 -timeout 9m

.PHONY: all deps bench-deps build test lint unit demo bench bench-nat bench-rootless fuzz soak clean

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -o $(BIN) ./cmd/tapswitch

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Unit tests only: no root, no namespaces.
unit:
	$(GO) test $(TESTFLAGS) $$($(GO) list ./... | grep -v /integration)

test: deps lint build
	$(GO) test $(TESTFLAGS) ./...

demo: deps build
	$(BIN) demo

# Optional switches to compare with (Open vSwitch, vde2): only for bench,
# never needed by make test.
bench-deps:
	@scripts/deps.sh bench

# The benchmark harness (bench/): builds its own namespaces, runs interleaved
# rounds, prints a table, writes JSON and SVG under bench/results/.
bench: deps build
	$(GO) build -o bin/tsbench ./bench
	bin/tsbench -bin $(BIN) $(if $(ROUNDS),-rounds $(ROUNDS)) $(if $(filter-out 0,$(QUICK)),-quick)

# The same for NAT: bridge + nftables masquerade/dnat against the TAP uplink.
bench-nat: deps bench-deps build
	bench/nat-compare.sh $(BIN)

# Rootless networking: tapswitch's host uplink against slirp4netns and
# pasta, as nobody in a namespace of its own; ROUNDS=n (default 3),
# MTUS="1500 65520", SECONDS_PER_TEST=5. Table on stdout, JSON in bench/results/.
bench-rootless: deps bench-deps build
	bench/rootless-compare.sh $(BIN)

# Fuzzing beyond the seed corpora that make test replays (scripts/fuzz.sh).
fuzz:
	FUZZTIME=$(or $(FUZZTIME),1m) ONLY='$(ONLY)' GO=$(GO) scripts/fuzz.sh

# The soak (bench/soak): a curve of the daemon's RSS, goroutines and fds
# under a mixed load, printed and written as JSON and SVG to bench/results/.
soak: deps build
	$(GO) build -o bin/tssoak ./bench/soak
	bin/tssoak -bin $(BIN) -duration $(or $(DURATION),10m)

clean:
	rm -rf bin
