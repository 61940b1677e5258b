# Shell functions shared by the same-run comparison scripts
# (nat-compare.sh), sourced by them. They read $secs,
# the seconds of each iperf3 run.

# tcp CLIENT_NS SERVER_NS SERVER_IP: Gbit/s received ("fail" if iperf3
# failed twice).
tcp() {
	local try out
	for try in 1 2; do
		# `ip netns exec` execs iperf3, so $! is iperf3's own PID.
		ip netns exec "$2" iperf3 -s -1 >/dev/null 2>&1 &
		local srv=$!
		for _ in $(seq 100); do
			[ -n "$(ip netns exec "$2" ss -Hltn 'sport = :5201')" ] && break
			sleep 0.05
		done
		out=$(ip netns exec "$1" iperf3 -c "$3" -t "$secs" -f g 2>&1 | awk '/receiver/ {print $(NF-2)}')
		kill "$srv" 2>/dev/null || true
		wait "$srv" 2>/dev/null || true
		[ -n "$out" ] && { echo "$out"; return; }
		echo "iperf3 $1 -> $3 failed (try $try)" >&2
	done
	echo fail
}

# median VALUES...: the median of numbers.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# ratio A B: A/B with two decimals, "-" when B is not positive.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
