#!/usr/bin/env bash
# bench/nat-compare.sh BIN: iperf3 TCP (1 stream) through NAT, container ->
# lan (masquerade) and lan -> a published port (DNAT), over IPv4 and over
# IPv6 (NAT66), through a Linux bridge with kernel MASQUERADE/DNAT
# (nftables ip and ip6 tables: what docker0 and ip6tables masquerade do)
# and through tapswitch with its routed TAP uplink (ip6=, gw6=), all
# interleaved over ROUNDS rounds (default 3), in one run on this machine.
#
# Everything runs in namespaces this script creates and is removed on exit:
#   kernel:    kc (container, 10.97.0.2, fd97::2) -veth- kr (bridge br0
#              10.97.0.1 fd97::1, nft masquerade and dnat, up0 198.51.100.2
#              2001:db8:51::2) -veth- kl (lan, 198.51.100.1 2001:db8:51::1)
#   tapswitch: tc (container, 10.96.0.2, fd96::2) -TAP- tapswitch (this
#              namespace) -TAP uplink 198.51.100.2 2001:db8:51::2- tl (lan,
#              ts0 198.51.100.1 2001:db8:51::1)
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
ip -n ${p}kr addr add fd97::1/64 dev br0 nodad
ip -n ${p}kr link set br0 up
ip -n ${p}kr link add vc type veth peer name eth0 netns ${p}kc
ip -n ${p}kr link set vc master br0 up
ip -n ${p}kc addr add 10.97.0.2/24 dev eth0
ip -n ${p}kc addr add fd97::2/64 dev eth0 nodad
ip -n ${p}kc link set eth0 up
ip -n ${p}kc route add default via 10.97.0.1
ip -n ${p}kc -6 route add default via fd97::1
ip -n ${p}kr link add up0 type veth peer name eth0 netns ${p}kl
ip -n ${p}kr addr add 198.51.100.2/24 dev up0
ip -n ${p}kr addr add 2001:db8:51::2/64 dev up0 nodad
ip -n ${p}kr link set up0 up
ip -n ${p}kl addr add 198.51.100.1/24 dev eth0
ip -n ${p}kl addr add 2001:db8:51::1/64 dev eth0 nodad
ip -n ${p}kl link set eth0 up
ip netns exec ${p}kr sysctl -qw net.ipv4.ip_forward=1
ip netns exec ${p}kr sysctl -qw net.ipv6.conf.all.forwarding=1
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
table ip6 nat {
	chain prerouting {
		type nat hook prerouting priority dstnat;
		iifname "up0" tcp dport 5201 dnat to [fd97::2]:5201
	}
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "up0" ip6 saddr fd97::/64 masquerade
	}
}
NFT

# tapswitch: the daemon in this namespace, its uplink in tl, one container
# with 5201 published.
"$bin" run --control "$dir/s.sock" --subnet 10.96.0.0/24 --ipv6 --subnet6 fd96::/64 --dns=false \
	--uplink tap,netns=/run/netns/${p}tl,ifname=ts0,ip=198.51.100.2/24,gw=198.51.100.1,ip6=2001:db8:51::2/64,gw6=2001:db8:51::1 \
	2>"$dir/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do "$bin" ports --control "$dir/s.sock" >/dev/null 2>&1 && break; sleep 0.05; done
ip -n ${p}tl addr add 198.51.100.1/24 dev ts0
ip -n ${p}tl addr add 2001:db8:51::1/64 dev ts0 nodad
"$bin" attach --netns /run/netns/${p}tc --name tc -p 5201:5201 --control "$dir/s.sock" >/dev/null

. "$(dirname "$0")/lib.sh" # tcp, median, ratio

# Warm both paths (ARP, neighbour tables) before measuring.
ip netns exec ${p}kc ping -c 2 -i 0.2 -q 198.51.100.1 >/dev/null
ip netns exec ${p}tc ping -c 2 -i 0.2 -q 198.51.100.1 >/dev/null
ip netns exec ${p}kc ping -6 -c 2 -i 0.2 -w 5 -q 2001:db8:51::1 >/dev/null
ip netns exec ${p}tc ping -6 -c 2 -i 0.2 -w 5 -q 2001:db8:51::1 >/dev/null

# Per path (k kernel, t tapswitch): o out (masquerade), i in (DNAT), and
# the same over IPv6 (o6, i6).
declare -a ko ki to ti ko6 ki6 to6 ti6
for r in $(seq "$rounds"); do
	echo "round $r/$rounds" >&2
	if ((RANDOM % 2)); then order="k t"; else order="t k"; fi
	for x in $order; do
		if [ $x = k ]; then
			ko+=("$(tcp ${p}kc ${p}kl 198.51.100.1)"); ki+=("$(tcp ${p}kl ${p}kc 198.51.100.2)")
			ko6+=("$(tcp ${p}kc ${p}kl 2001:db8:51::1)"); ki6+=("$(tcp ${p}kl ${p}kc 2001:db8:51::2)")
		else
			to+=("$(tcp ${p}tc ${p}tl 198.51.100.1)"); ti+=("$(tcp ${p}tl ${p}tc 198.51.100.2)")
			to6+=("$(tcp ${p}tc ${p}tl 2001:db8:51::1)"); ti6+=("$(tcp ${p}tl ${p}tc 2001:db8:51::2)")
		fi
	done
done

# row LABEL KERNEL_VALUES TAPSWITCH_VALUES (space-separated): one line of
# the table, medians and their ratio.
row() {
	local k t
	k=$(median $2) t=$(median $3)
	printf '%-46s %16s %12s %8s\n' "$1" "$k" "$t" "$(ratio "$t" "$k")"
}
echo
printf '%-46s %16s %12s %8s\n' "" "bridge+nftables" "tapswitch" "ratio"
row "TCP container -> lan (masquerade), Gbit/s" "${ko[*]}" "${to[*]}"
row "TCP lan -> published port (DNAT), Gbit/s" "${ki[*]}" "${ti[*]}"
row "TCP6 container -> lan (NAT66 masq.), Gbit/s" "${ko6[*]}" "${to6[*]}"
row "TCP6 lan -> published port (DNAT66), Gbit/s" "${ki6[*]}" "${ti6[*]}"
echo "(medians of $rounds rounds, ${secs}s iperf3 each; all rounds: kernel out ${ko[*]}, tapswitch out ${to[*]}, kernel in ${ki[*]}, tapswitch in ${ti[*]};"
echo " IPv6: kernel out ${ko6[*]}, tapswitch out ${to6[*]}, kernel in ${ki6[*]}, tapswitch in ${ti6[*]})"
"$bin" conntrack --stats --control "$dir/s.sock" | sed 's/^/tapswitch conntrack: /'
