#!/usr/bin/env bash
# bench/suppress-compare.sh BIN: what ARP suppression on a VXLAN overlay
# saves, tapswitch with suppress=on against suppress=off and against
# kernel vxlan hosts (a Linux bridge with a vxlan device), with and
# without the vxlan port's neigh_suppress (which answers from the bridge's
# neighbour table, filled by a control plane such as EVPN, not learned
# from the data plane), in one run:
#
#   - underlay datagrams for new neighbours: from a cold start, each of
#     the M containers of host 1 resolves each of the N containers of host
#     2 once (arping, one broadcast request each, as the kernel's first
#     request); counted are the packets host 1 sends on its underlay link
#     and those host 3, a third member of the segment with its own
#     container, receives;
#   - ARP resolution time from a container of host 1 to one of host 2:
#     COUNT (default 100) broadcast requests, one arping each, interleaved
#     across the setups, median and p99 of the times arping reports, once
#     the address is known.
#
# Everything runs in namespaces this script creates, removed on exit: an
# underlay bridge (u) and three hosts (h1..h3, 198.51.100.1-3) per setup,
# containers in 10.80.0.0/16. Needs root, ip, bridge and arping (make
# deps).
set -euo pipefail

bin=${1:-bin/tapswitch}
count=${COUNT:-100}
m=4 n=4
[ "$(id -u)" -eq 0 ] || { echo "suppress-compare.sh: needs root (network namespaces)" >&2; exit 1; }
for t in ip bridge arping; do command -v $t >/dev/null || { echo "suppress-compare.sh: needs $t (make deps)" >&2; exit 1; }; done
. "$(dirname "$0")/lib.sh"
setups="on off kernel kernel-ns"

p=tswp$$
dir=$(mktemp -d)
pids=()
nss=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
	for ns in "${nss[@]}"; do ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; done
	rm -rf "$dir"
}
trap cleanup EXIT

newns() { ip netns add "$1"; ip -n "$1" link set lo up; nss+=("$1"); }

# setup NAME KIND: the underlay and hosts 1-3 of setup NAME, KIND one of
# on, off (tapswitch with suppress=on|off), kernel or kernel-ns (the
# kernel's vxlan port with neigh_suppress on); m containers on host
# 1 (NAME-a1..), n on host 2 (NAME-b1..), one on host 3 (NAME-c1).
setup() {
	local s=$1 kind=$2 i
	newns ${p}${s}u
	ip -n ${p}${s}u link add br0 type bridge
	ip -n ${p}${s}u link set br0 up
	for i in 1 2 3; do
		newns ${p}${s}h$i
		ip -n ${p}${s}h$i link add u0 type veth peer name p$i netns ${p}${s}u
		ip -n ${p}${s}u link set p$i master br0 up
		ip -n ${p}${s}h$i addr add 198.51.100.$i/24 dev u0
		ip -n ${p}${s}h$i link set u0 up
	done
	local cs=() counts=($m $n 1) names=(a b c)
	for i in 1 2 3; do
		local remotes=() j
		for j in 1 2 3; do [ $j -ne $i ] && remotes+=(198.51.100.$j); done
		local h=${p}${s}h$i
		if [ "$kind" != on ] && [ "$kind" != off ]; then
			ip netns exec $h ethtool -K u0 tx off >/dev/null 2>&1 || true
			ip -n $h link add vx42 type vxlan id 42 local 198.51.100.$i dstport 4789 dev u0
			ip -n $h link add br0 type bridge
			ip -n $h link set vx42 master br0 up
			ip -n $h link set br0 up
			for r in "${remotes[@]}"; do ip netns exec $h bridge fdb append 00:00:00:00:00:00 dev vx42 dst "$r"; done
			if [ "$kind" = kernel-ns ]; then ip netns exec $h bridge link set dev vx42 neigh_suppress on; fi
		else
			local spec="vni=42,local=198.51.100.$i,remote=${remotes[0]},remote=${remotes[1]},suppress=$kind"
			ip netns exec $h "$bin" run --control "$dir/$s$i.sock" --state "$dir/$s$i.state" --uplink none --dns=false \
				--subnet 10.80.0.0/16 --ip-range 10.80.$i.0/24 --vxlan "$spec" >"$dir/$s$i.log" 2>&1 &
			pids+=($!)
			for _ in $(seq 100); do "$bin" ports --control "$dir/$s$i.sock" >/dev/null 2>&1 && break; sleep 0.1; done
		fi
		for j in $(seq 1 "${counts[$((i - 1))]}"); do
			local c=${p}${s}${names[$((i - 1))]}$j
			newns $c
			if [ "$kind" != on ] && [ "$kind" != off ]; then
				ip -n $h link add k$j mtu 1450 type veth peer name eth0 netns $c
				ip -n $h link set k$j master br0 up
				ip -n $c addr add 10.80.$i.$j/16 dev eth0
				ip -n $c link set eth0 mtu 1450 up
			else
				"$bin" attach --control "$dir/$s$i.sock" --netns /run/netns/$c --name ${names[$((i - 1))]}$j --no-resolv-conf >/dev/null
			fi
		done
	done
}

# addr SETUP HOST J: the address of container J of host HOST (1-3), the
# same in every setup (--ip-range hands out .1 first; kernel hosts use it).
addr() { echo 10.80.$2.$3; }
stat_of() { ip netns exec "$1" cat "/sys/class/net/u0/statistics/$2"; }

# newneigh SETUP: "tx rx": the underlay packets host 1 sent and host 3
# received while every container of host 1 resolved every one of host 2.
newneigh() {
	local s=$1 i j tx0 rx0
	tx0=$(stat_of ${p}${s}h1 tx_packets)
	rx0=$(stat_of ${p}${s}h3 rx_packets)
	for i in $(seq 1 $m); do
		for j in $(seq 1 $n); do
			ip netns exec ${p}${s}a$i arping -q -c 1 -w 2 -I eth0 "$(addr "$s" 2 "$j")" || echo "arping a$i -> b$j failed ($s)" >&2
		done
	done
	echo "$(($(stat_of ${p}${s}h1 tx_packets) - tx0)) $(($(stat_of ${p}${s}h3 rx_packets) - rx0))"
}

# resolve SETUP: one resolution time (ms) from a1 to b1, or nothing.
resolve() {
	ip netns exec ${p}${1}a1 arping -c 1 -w 2 -I eth0 "$(addr "$1" 2 1)" | awk '/reply from/ {sub("ms", "", $NF); print $NF}'
}

# pct P: the P-th percentile (nearest rank) of numbers on stdin.
pct() { sort -g | awk -v p="$1" '{a[NR]=$1} END {i = int((NR * p + 99) / 100); if (i < 1) i = 1; print a[i]}'; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for s in $setups; do setup $s $s; done
sleep 1
declare -A nn
for s in $setups; do nn[$s]=$(newneigh $s); done
printf '\n%-8s %28s %24s\n' setup "host 1 underlay tx (packets)" "host 3 underlay rx"
for s in $setups; do
	read -r tx rx <<<"${nn[$s]}"
	printf '%-8s %28s %24s\n' "$s" "$tx" "$rx"
done
echo "($m containers on host 1 each resolving $n containers of host 2: $((m * n)) requests)"

# Interleaved, so that a change of load falls on every setup alike.
for _ in $(seq 1 "$count"); do
	for s in $setups; do resolve $s >>"$dir/$s.times"; done
done
printf '\n%-8s %10s %10s %8s\n' setup "p50 (ms)" "p99 (ms)" replies
for s in $setups; do
	printf '%-8s %10s %10s %8s\n' "$s" "$(pct 50 <"$dir/$s.times")" "$(pct 99 <"$dir/$s.times")" "$(wc -l <"$dir/$s.times")/$count"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
