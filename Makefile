# tapswitch: a userspace virtual switch for containers.
#   make demo   build, then run the demo on network namespaces (root)
#   make test   formatting, vet, staticcheck, unit and integration tests
#   make deps   install missing tools (apt-get, as root) and Go modules

GO          ?= go
BIN         := bin/tapswitch
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
TESTFLAGS   ?= -race -count=1 -timeout 9m

.PHONY: all deps build test lint unit demo bench bench-nat clean

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

# A quick comparison with the Linux bridge (iperf3 TCP and ping); the full
# benchmark harness is bench/'s own issue.
bench: deps build
	bench/compare.sh $(BIN)

# The same for NAT: bridge + nftables masquerade/dnat against the TAP uplink.
bench-nat: deps build
	bench/nat-compare.sh $(BIN)

clean:
	rm -rf bin
