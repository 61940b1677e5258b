#!/usr/bin/env bash
# Installs what tapswitch's demo, tests and benchmarks need and is missing:
# Debian packages with apt-get when we are root, Go modules through go.mod.
# Idempotent: it installs nothing when everything is there.
# `deps.sh bench` also installs what the benchmarks compare with: vde2
# (make bench), nftables (make bench-nat), slirp4netns and passt's pasta
# (make bench-rootless), dnsmasq (make bench-dns), and builds gvproxy and
# its forwarder (gvisor-tap-vsock's cmd/gvproxy and cmd/vm, pinned, with go
# install through the module proxy) into bin/bench for make bench-rootless.
# Open vSwitch is always installed: the VXLAN tests interoperate with it.
set -euo pipefail

# package:command pairs; the command tells whether the package is there
# (a path: that file exists; dpkg:NAME: the package is installed).
need=(
	iproute2:ip
	iputils-ping:ping
	# The VXLAN suppression test resolves with arping (and -D probes).
	iputils-arping:arping
	iperf3:iperf3
	tcpdump:tcpdump
	curl:curl
	util-linux:nsenter
	util-linux:setpriv
	bind9-dnsutils:dig
	libc-bin:getent
	# The CNI plugin's end-to-end test drives podman (CNI backend, runc)
	# with an image made from the static busybox.
	podman:podman
	runc:runc
	conmon:conmon
	uidmap:newuidmap
	busybox-static:dpkg:busybox-static
	# The VXLAN tests: a kernel host checksums in software (ethtool), and
	# an Open vSwitch host interoperates.
	ethtool:ethtool
	openvswitch-switch:ovs-vswitchd
)
if [ "${1:-}" = bench ]; then
	need+=(dnsmasq-base:dnsmasq vde2:vde_switch nftables:nft slirp4netns:slirp4netns passt:pasta)
	# make bench-podman: podman's own CNI bridge to compare with.
	need+=(containernetworking-plugins:/usr/lib/cni/bridge)
fi

missing=()
for pair in "${need[@]}"; do
	pkg=${pair%%:*} cmd=${pair#*:}
	case $cmd in
	dpkg:*)
		# No command tells: Debian's dynamic busybox also provides
		# /bin/busybox, and the test's image needs the static one.
		[ "$(dpkg-query -W -f='${Status}' "${cmd#dpkg:}" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
		;;
	/*) [ -e "$cmd" ] || missing+=("$pkg") ;;
	*) command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg") ;;
	esac
done

if ((${#missing[@]})); then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "deps: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "deps: missing ${missing[*]}; run 'sudo make deps' to install them." >&2
		echo "deps: the integration tests and the demo need them (and root); unit tests do not." >&2
	fi
fi

go mod download

if [ "${1:-}" = bench ]; then
	# gvproxy and gvforwarder (cmd/vm) of one pinned release, rebuilt only
	# when bin/bench lacks them at that version.
	gvtv=github.com/containers/gvisor-tap-vsock gvver=v0.8.9
	built() { go version -m "bin/bench/$1" 2>/dev/null | grep -q "mod[[:space:]]*$gvtv[[:space:]]*$gvver"; }
	if ! built gvproxy || ! built vm; then
		echo "deps: building gvproxy and gvforwarder $gvver into bin/bench"
		GOBIN=$PWD/bin/bench go install "$gvtv/cmd/gvproxy@$gvver" "$gvtv/cmd/vm@$gvver"
	fi
fi
