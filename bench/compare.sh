#!/usr/bin/env bash
# bench/compare.sh BIN: iperf3 TCP (1 stream) and ping RTT between two
# network namespaces, through the Linux bridge (veth) and through tapswitch,
# interleaved over ROUNDS rounds (default 3), in one run on this machine.
# Everything runs in namespaces this script creates (the bridge too) and is
# removed on exit; traffic stays between those namespaces. Needs root,
# iperf3 and ping. The full benchmark harness (UDP, OVS, vde2, JSON, SVG) is
# bench's own issue; this is the quick comparison the README quotes.
set -euo pipefail

bin=${1:-bin/tapswitch}
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_TEST:-5}
[ "$(id -u)" -eq 0 ] || { echo "compare.sh: needs root (network namespaces)" >&2; exit 1; }
for t in ip iperf3 ping; do command -v $t >/dev/null || { echo "compare.sh: needs $t (make deps)" >&2; exit 1; }; done

p=tswb$$
dir=$(mktemp -d)
daemon_pid=
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
	for ns in ${p}sw ${p}ba ${p}bb ${p}ta ${p}tb; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

# Linux bridge: a bridge in its own namespace, a veth pair into each side.
ip netns add ${p}sw
ip -n ${p}sw link add br0 type bridge
ip -n ${p}sw link set br0 up
i=1
for side in ba bb; do
	ip netns add ${p}$side
	ip -n ${p}$side link set lo up
	ip -n ${p}sw link add v$side type veth peer name eth0 netns ${p}$side
	ip -n ${p}sw link set v$side master br0 up
	ip -n ${p}$side addr add 10.99.0.$i/24 dev eth0
	ip -n ${p}$side link set eth0 up
	i=$((i + 1))
done

# tapswitch: the daemon in this namespace, two namespaces attached.
"$bin" run --control "$dir/s.sock" --subnet 10.98.0.0/24 2>"$dir/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do "$bin" ports --control "$dir/s.sock" >/dev/null 2>&1 && break; sleep 0.05; done
for side in ta tb; do
	ip netns add ${p}$side
	ip -n ${p}$side link set lo up
	"$bin" attach --netns /run/netns/${p}$side --name $side --control "$dir/s.sock" >/dev/null
done

# tcp CLIENT_NS SERVER_NS SERVER_IP: Gbit/s received.
tcp() {
	# `ip netns exec` execs iperf3, so $! is iperf3's own PID.
	ip netns exec "$2" iperf3 -s -1 >/dev/null 2>&1 &
	local srv=$!
	sleep 0.3
	ip netns exec "$1" iperf3 -c "$3" -t "$secs" -f g 2>&1 | awk '/receiver/ {print $(NF-2)}'
	kill "$srv" 2>/dev/null || true
	wait "$srv" 2>/dev/null || true
}
# rtt CLIENT_NS IP: average ping RTT in µs over 200 pings.
rtt() {
	ip netns exec "$1" ping -c 200 -i 0.01 -q "$2" | awk -F/ '/rtt/ {printf "%.0f\n", $5 * 1000}'
}

# Warm both paths (ARP, FDB) before measuring.
rtt ${p}ba 10.99.0.2 >/dev/null
rtt ${p}ta 10.98.0.3 >/dev/null

declare -a bt tt br tr
for r in $(seq "$rounds"); do
	echo "round $r/$rounds" >&2
	if ((RANDOM % 2)); then order="b t"; else order="t b"; fi
	for x in $order; do
		if [ $x = b ]; then
			bt+=("$(tcp ${p}ba ${p}bb 10.99.0.2)"); br+=("$(rtt ${p}ba 10.99.0.2)")
		else
			tt+=("$(tcp ${p}ta ${p}tb 10.98.0.3)"); tr+=("$(rtt ${p}ta 10.98.0.3)")
		fi
	done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(median "${bt[@]}"); mt=$(median "${tt[@]}")
rb=$(median "${br[@]}"); rt=$(median "${tr[@]}")
echo
printf '%-28s %14s %14s %8s\n' "" "linux bridge" "tapswitch" "ratio"
printf '%-28s %14s %14s %8s\n' "TCP 1 stream, Gbit/s" "$mb" "$mt" "$(awk -v a="$mt" -v b="$mb" 'BEGIN {printf "%.2f", a / b}')"
printf '%-28s %14s %14s %8s\n' "ping RTT avg, µs" "$rb" "$rt" "$(awk -v a="$rt" -v b="$rb" 'BEGIN {printf "%.2f", a / b}')"
echo "(medians of $rounds rounds, ${secs}s iperf3 each, 200 pings each; all rounds: bridge TCP ${bt[*]}, tapswitch TCP ${tt[*]}, bridge RTT ${br[*]}, tapswitch RTT ${tr[*]})"
