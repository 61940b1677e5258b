# tapswitch: a userspace virtual switch for containers.
#   make demo   build, then run the demo on network namespaces (root)
#   make test   formatting, vet, staticcheck, unit and integration tests
#   make deps   install missing tools (apt-get, as root) and Go modules
#   make bench  tapswitch against the Linux bridge (and OVS, vde2), root;
#               ROUNDS=n (default 5), QUICK=1 (one short round), VARIANTS=nooffload,
#               TCP_CC=cubic (the TCP rows' congestion control; default the machine's)
#   make bench-rootless  tapswitch against slirp4netns, pasta and gvproxy, run as nobody
#   make fuzz   every fuzz target in turn, FUZZTIME each (default 1m); ONLY=regexp
#   make soak   attach/detach, connections, a MAC flood and captures for
#               DURATION (default 10m), sampling RSS, goroutines, fds (root)
#   make bench-dns  the embedded DNS server against dnsmasq (qps, p99, CPU)
#   make bench-podman  `podman run` time: tapswitch's CNI plugin against
#               podman's own CNI bridge; ROUNDS=n (default 10)
#   make install    bin/tapswitch to $(PREFIX)/bin, the CNI plugin to
#                   $(CNI_BIN_DIR)/tapswitch, the systemd units; DESTDIR honoured
#   make uninstall  removes what install put there

GO          ?= go
BIN         := bin/tapswitch
CNI_BIN     := bin/cni/tapswitch
PREFIX      ?= /usr/local
CNI_BIN_DIR ?= /opt/cni/bin
UNIT_DIR    ?= /etc/systemd/system
USER_UNIT_DIR ?= $(PREFIX)/lib/systemd/user
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
TESTFLAGS   ?= -race -count=1 -timeout 9m

.PHONY: all deps bench-deps build test lint unit demo bench bench-nat bench-rootless bench-dns bench-podman bench-overlay bench-suppress install uninstall fuzz soak clean

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -o $(BIN) ./cmd/tapswitch
	$(GO) build -o $(CNI_BIN) ./cmd/tapswitch-cni

# The units name the binary's installed path: $(PREFIX)/bin/tapswitch.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/tapswitch
	install -D -m 0755 $(CNI_BIN) $(DESTDIR)$(CNI_BIN_DIR)/tapswitch
	install -d $(DESTDIR)$(UNIT_DIR) $(DESTDIR)$(USER_UNIT_DIR)
	sed 's|@BINDIR@|$(PREFIX)/bin|g' contrib/systemd/tapswitch.service > $(DESTDIR)$(UNIT_DIR)/tapswitch.service
	sed 's|@BINDIR@|$(PREFIX)/bin|g' contrib/systemd/tapswitch-user.service > $(DESTDIR)$(USER_UNIT_DIR)/tapswitch.service
	chmod 0644 $(DESTDIR)$(UNIT_DIR)/tapswitch.service $(DESTDIR)$(USER_UNIT_DIR)/tapswitch.service
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/tapswitch $(DESTDIR)$(CNI_BIN_DIR)/tapswitch
	rm -f $(DESTDIR)$(UNIT_DIR)/tapswitch.service $(DESTDIR)$(USER_UNIT_DIR)/tapswitch.service
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

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

# Rootless networking: tapswitch's host uplink against slirp4netns, pasta
# and gvproxy, as nobody in a namespace of its own; ROUNDS=n (default 3),
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

# DNS: tapswitch's embedded server against dnsmasq with the same names,
# local and cached forwarded ones; ROUNDS=n (default 3), SECONDS_PER_TEST=5,
# CONCURRENCY="1 8". A table on stdout.
bench-dns: deps bench-deps build
	$(GO) build -o bin/dnsload ./bench/dnsload
	bench/dns-compare.sh $(BIN) bin/dnsload
# podman's `run` with tapswitch's CNI plugin against its own CNI bridge.
bench-podman: deps bench-deps build
	bench/podman-compare.sh $(BIN) bin/cni

# What ARP suppression saves on a VXLAN overlay: underlay packets for new
# neighbours and ARP resolution time (p50, p99 of COUNT arpings, default
# 100), suppress=on against suppress=off and kernel vxlan hosts.
bench-suppress: deps build
	bench/suppress-compare.sh $(BIN)

# The overlay rows of make bench alone: TCP 1 stream across two hosts
# joined by VXLAN, tapswitch <-> tapswitch and tapswitch -> kernel against
# kernel vxlan <-> kernel vxlan, interleaved (bench/overlay.go). ROUNDS=n,
# QUICK=1, TCP_CC=name; BASE_BIN=path adds the tapswitch pairs run with
# another build.
OVERLAYS = vxlan-kernel,vxlan-tapswitch,vxlan-tapswitch-kernel,vxlan-tapswitch-base,vxlan-tapswitch-kernel-base
bench-overlay: deps build
	$(GO) build -o bin/tsbench ./bench
	bin/tsbench -bin $(BIN) -only $(OVERLAYS) -out bench/results/overlay $(if $(ROUNDS),-rounds $(ROUNDS)) $(if $(filter-out 0,$(QUICK)),-quick)

clean:
	rm -rf bin
