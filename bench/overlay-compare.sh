#!/usr/bin/env bash
# bench/overlay-compare.sh BIN: iperf3 TCP (1 stream) container -> container
# across two hosts joined by VXLAN (VNI 42), in three pairs measured in one
# run, interleaved over ROUNDS rounds (default 3):
#   tapswitch <-> tapswitch, tapswitch <-> kernel, kernel <-> kernel
# (a Linux bridge with a vxlan device on each kernel host).
#
# Everything runs in namespaces this script creates and removes on exit:
# an underlay bridge (namespace ul, 198.51.100.0/24), hosts ta and tb
# (tapswitch daemons, .1 and .2), kt (kernel, .3, paired with ta), ka and kb
# (kernel, .4 and .5, paired together); each host has one container in
# 10.80.0.0/16. kt checksums in software (ethtool -K u0 tx off): on a veth
# underlay the kernel would hand tapswitch inner TCP checksums left partial.
# Traffic stays between those namespaces. Needs root, iperf3, bridge and
# ethtool.
set -euo pipefail

bin=${1:-bin/tapswitch}
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_TEST:-5}
[ "$(id -u)" -eq 0 ] || { echo "overlay-compare.sh: needs root (network namespaces)" >&2; exit 1; }
for t in ip iperf3 bridge ethtool; do command -v $t >/dev/null || { echo "overlay-compare.sh: needs $t (make deps)" >&2; exit 1; }; done

p=tswo$$
dir=$(mktemp -d)
hosts="ta tb kt ka kb"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
	for ns in ul $hosts; do ip netns del ${p}$ns 2>/dev/null || true; ip netns del ${p}${ns}c 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

ip netns add ${p}ul
ip -n ${p}ul link add br0 type bridge
ip -n ${p}ul link set br0 up
declare -A addr=([ta]=198.51.100.1 [tb]=198.51.100.2 [kt]=198.51.100.3 [ka]=198.51.100.4 [kb]=198.51.100.5)
declare -A cip=([ta]=10.80.1.1 [tb]=10.80.2.1 [kt]=10.80.3.2 [ka]=10.80.4.2 [kb]=10.80.5.2)
i=0
for h in $hosts; do
	i=$((i + 1))
	ip netns add ${p}$h
	ip netns add ${p}${h}c
	ip -n ${p}$h link set lo up
	ip -n ${p}${h}c link set lo up
	ip -n ${p}$h link add u0 type veth peer name p$i netns ${p}ul
	ip -n ${p}ul link set p$i master br0 up
	ip -n ${p}$h addr add ${addr[$h]}/24 dev u0
	ip -n ${p}$h link set u0 up
done

# kernel HOST PEER: a bridge with a vxlan device replicating to PEER, and
# the host's container on a veth.
kernel() {
	local h=$1 peer=$2
	ip -n ${p}$h link add vx42 type vxlan id 42 local ${addr[$h]} dstport 4789 dev u0
	ip -n ${p}$h link add br0 type bridge
	ip -n ${p}$h link set vx42 master br0 up
	ip netns exec ${p}$h bridge fdb append 00:00:00:00:00:00 dev vx42 dst ${addr[$peer]}
	ip -n ${p}$h link add kv0 mtu 1450 type veth peer name eth0 netns ${p}${h}c
	ip -n ${p}$h link set kv0 master br0 up
	ip -n ${p}$h link set br0 up
	ip -n ${p}${h}c addr add ${cip[$h]}/16 dev eth0
	ip -n ${p}${h}c link set eth0 mtu 1450 up
}
ip netns exec ${p}kt ethtool -K u0 tx off >/dev/null
kernel kt ta
kernel ka kb
kernel kb ka

# tapswitch HOST RANGE REMOTES...: a daemon in HOST, its container attached.
tapswitch() {
	local h=$1 range=$2
	shift 2
	local spec="vni=42,local=${addr[$h]}" r
	for r in "$@"; do spec+=",remote=${addr[$r]}"; done
	ip netns exec ${p}$h "$bin" run --control "$dir/$h.sock" --uplink none --subnet 10.80.0.0/16 \
		--ip-range "$range" --vxlan "$spec" 2>"$dir/$h.log" &
	pids+=($!)
	for _ in $(seq 100); do "$bin" ports --control "$dir/$h.sock" >/dev/null 2>&1 && break; sleep 0.05; done
	"$bin" attach --netns /run/netns/${p}${h}c --name c --control "$dir/$h.sock" >/dev/null
}
tapswitch ta 10.80.1.0/24 tb kt
tapswitch tb 10.80.2.0/24 ta

. "$(dirname "$0")/lib.sh" # tcp, median, ratio

# Warm the paths (ARP, learning) before measuring.
ip netns exec ${p}tac ping -c 2 -i 0.2 -q ${cip[tb]} >/dev/null
ip netns exec ${p}tac ping -c 2 -i 0.2 -q ${cip[kt]} >/dev/null
ip netns exec ${p}kac ping -c 2 -i 0.2 -q ${cip[kb]} >/dev/null

declare -a tt tk kk
for r in $(seq "$rounds"); do
	echo "round $r/$rounds" >&2
	for x in $(printf '%s\n' tt tk kk | shuf); do
		case $x in
		tt) tt+=("$(tcp ${p}tac ${p}tbc ${cip[tb]})") ;;
		tk) tk+=("$(tcp ${p}tac ${p}ktc ${cip[kt]})") ;;
		kk) kk+=("$(tcp ${p}kac ${p}kbc ${cip[kb]})") ;;
		esac
	done
done

mtt=$(median "${tt[@]}"); mtk=$(median "${tk[@]}"); mkk=$(median "${kk[@]}")
echo
printf '%-44s %10s %8s\n' "TCP 1 stream over VXLAN, Gbit/s" "median" "ratio"
printf '%-44s %10s %8s\n' "kernel vxlan <-> kernel vxlan" "$mkk" "1.00"
printf '%-44s %10s %8s\n' "tapswitch <-> tapswitch" "$mtt" "$(ratio "$mtt" "$mkk")"
printf '%-44s %10s %8s\n' "tapswitch <-> kernel vxlan" "$mtk" "$(ratio "$mtk" "$mkk")"
echo "(medians of $rounds rounds, ${secs}s iperf3 each; all rounds: kernel ${kk[*]}, tapswitch ${tt[*]}, tapswitch->kernel ${tk[*]})"
