#!/usr/bin/env bash
# bench/nat-compare.sh BIN: iperf3 TCP (1 stream) through NAT, container ->
# lan (masquerade) and lan -> a published port (DNAT), through a Linux
# bridge with kernel MASQUERADE/DNAT (nftables, what docker0 does) and
# through tapswitch with its routed TAP uplink, interleaved over ROUNDS
# rounds (default 3), in one run on this machine.
#
# Everything runs in namespaces this script creates and is removed on exit:
#   kernel:    kc (container, 10.97.0.2) -veth- kr (bridge br0 10.97.0.1,
#              nft masquerade and dnat, up0 198.51.100.2) -veth- kl (lan,
#              198.51.100.1)
#   tapswitch: tc (container, 10.96.0.2) -TAP- tapswitch (this namespace)
#              -TAP uplink 198.51.100.2- tl (lan, ts0 198.51.100.1)
# Traffic stays between those namespaces. Needs root, iperf3 and nft.
set -euo pipefail

bin=${1:-bin/tapswitch}
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_TEST:-5}
[ "$(id -u)" -eq 0 ] || { echo "nat-compare.sh: needs root (network namespaces)" >&2; exit 1; }
for t in ip iperf3 nft; do command -v $t >/dev/null || { echo "nat-compare.sh: needs $t (make deps)" >&2; exit 1; }; done

p=tswn$$
dir=$(mktemp -d)
daemon_pid=
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
	for ns in ${p}kc ${p}kr ${p}kl ${p}tc ${p}tl; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

for ns in ${p}kc ${p}kr ${p}kl ${p}tc ${p}tl; do
	ip netns add $ns
	ip -n $ns link set lo up
done

# Kernel: the container behind a bridge in the router namespace, which
# masquerades to the lan and DNATs port 5201 to the container.
ip -n ${p}kr link add br0 type bridge
ip -n ${p}kr addr add 10.97.0.1/24 dev br0
ip -n ${p}kr link set br0 up
ip -n ${p}kr link add vc type veth peer name eth0 netns ${p}kc
ip -n ${p}kr link set vc master br0 up
ip -n ${p}kc addr add 10.97.0.2/24 dev eth0
ip -n ${p}kc link set eth0 up
ip -n ${p}kc route add default via 10.97.0.1
ip -n ${p}kr link add up0 type veth peer name eth0 netns ${p}kl
ip -n ${p}kr addr add 198.51.100.2/24 dev up0
ip -n ${p}kr link set up0 up
ip -n ${p}kl addr add 198.51.100.1/24 dev eth0
ip -n ${p}kl link set eth0 up
ip netns exec ${p}kr sysctl -qw net.ipv4.ip_forward=1
ip netns exec ${p}kr nft -f - <<'NFT'
table ip nat {
	chain prerouting {
		type nat hook prerouting priority dstnat;
		iifname "up0" tcp dport 5201 dnat to 10.97.0.2:5201
	}
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "up0" ip saddr 10.97.0.0/24 masquerade
	}
}
NFT

# tapswitch: the daemon in this namespace, its uplink in tl, one container
# with 5201 published.
"$bin" run --control "$dir/s.sock" --subnet 10.96.0.0/24 --dns=false \
	--uplink tap,netns=/run/netns/${p}tl,ifname=ts0,ip=198.51.100.2/24,gw=198.51.100.1 2>"$dir/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do "$bin" ports --control "$dir/s.sock" >/dev/null 2>&1 && break; sleep 0.05; done
ip -n ${p}tl addr add 198.51.100.1/24 dev ts0
"$bin" attach --netns /run/netns/${p}tc --name tc -p 5201:5201 --control "$dir/s.sock" >/dev/null

. "$(dirname "$0")/lib.sh" # tcp, median, ratio

# Warm both paths (ARP, neighbour tables) before measuring.
ip netns exec ${p}kc ping -c 2 -i 0.2 -q 198.51.100.1 >/dev/null
ip netns exec ${p}tc ping -c 2 -i 0.2 -q 198.51.100.1 >/dev/null

declare -a ko ki to ti
for r in $(seq "$rounds"); do
	echo "round $r/$rounds" >&2
	if ((RANDOM % 2)); then order="k t"; else order="t k"; fi
	for x in $order; do
		if [ $x = k ]; then
			ko+=("$(tcp ${p}kc ${p}kl 198.51.100.1)"); ki+=("$(tcp ${p}kl ${p}kc 198.51.100.2)")
		else
			to+=("$(tcp ${p}tc ${p}tl 198.51.100.1)"); ti+=("$(tcp ${p}tl ${p}tc 198.51.100.2)")
		fi
	done
done

mko=$(median "${ko[@]}"); mto=$(median "${to[@]}")
mki=$(median "${ki[@]}"); mti=$(median "${ti[@]}")
echo
printf '%-40s %16s %12s %8s\n' "" "bridge+nftables" "tapswitch" "ratio"
printf '%-40s %16s %12s %8s\n' "TCP container -> lan (masquerade), Gbit/s" "$mko" "$mto" "$(ratio "$mto" "$mko")"
printf '%-40s %16s %12s %8s\n' "TCP lan -> published port (DNAT), Gbit/s" "$mki" "$mti" "$(ratio "$mti" "$mki")"
echo "(medians of $rounds rounds, ${secs}s iperf3 each; all rounds: kernel out ${ko[*]}, tapswitch out ${to[*]}, kernel in ${ki[*]}, tapswitch in ${ti[*]})"
"$bin" conntrack --stats --control "$dir/s.sock" | sed 's/^/tapswitch conntrack: /'
