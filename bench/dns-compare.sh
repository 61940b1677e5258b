#!/usr/bin/env bash
# bench/dns-compare.sh BIN LOADGEN: queries per second and latency (p50,
# p99, p99.9) of tapswitch's embedded DNS server against dnsmasq serving
# the same names in the same run: local names (the containers'), and
# forwarded names answered from the cache (asked once before measuring).
# ROUNDS rounds (default 3) of SECONDS_PER_TEST seconds (default 5) at
# CONCURRENCY outstanding queries (default "1 8"), interleaved; the CPU time
# each server used is read from /proc/PID/stat.
#
# Everything runs in namespaces this script creates, removed on exit:
#   tapswitch: sw (the daemon, --uplink none, and an upstream dnsmasq on
#              its 127.0.0.1:5300) -TAP- c1..c20 (containers web1..web20;
#              c1 runs the load)
#   dnsmasq:   dm (dnsmasq on 203.0.113.1 with the same 20 names as host
#              records, forwarding to an upstream dnsmasq on its
#              127.0.0.1:5300) -veth- cl (203.0.113.2, runs the load)
# Queries go to those namespaces only. Needs root, ip and dnsmasq.
set -euo pipefail

bin=${1:-bin/tapswitch}
load=${2:-bin/dnsload}
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_TEST:-5}
concs=${CONCURRENCY:-1 8}
n=20
[ "$(id -u)" -eq 0 ] || { echo "dns-compare.sh: needs root (network namespaces)" >&2; exit 1; }
for t in ip dnsmasq; do command -v $t >/dev/null || { echo "dns-compare.sh: needs $t (make deps)" >&2; exit 1; }; done

p=tswd$$
dir=$(mktemp -d)
pids=()
nss=(${p}sw ${p}dm ${p}cl)
for i in $(seq 1 $n); do nss+=(${p}c$i); done
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
	for ns in "${nss[@]}"; do ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; done
	rm -rf "$dir"
}
trap cleanup EXIT

for ns in "${nss[@]}"; do
	ip netns add $ns
	ip -n $ns link set lo up
done

# The upstream both servers forward to: f1.fwd.test..f20.fwd.test with a
# TTL of an hour, on the loopback of the server's namespace.
upstream() {
	local args=(--keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null --user=root
		--port=5300 --listen-address=127.0.0.1 --bind-interfaces --local-ttl=3600 --pid-file=)
	for i in $(seq 1 $n); do args+=(--host-record=f$i.fwd.test,198.51.100.$i); done
	ip netns exec "$1" dnsmasq "${args[@]}" &
	pids+=($!)
}
upstream ${p}sw
upstream ${p}dm

# tapswitch, its containers web1..web20. The per-container rate limit
# (--dns-rate, 50000 a second by default) is lifted: dnsmasq has none, and
# the load comes from one container.
sock=$dir/ts.sock
ip netns exec ${p}sw "$bin" run --control "$sock" --uplink none --subnet 10.90.0.0/16 \
	--dns-upstream 127.0.0.1:5300 --dns-rate 10000000 --state "$dir/ts.state" >"$dir/ts.log" 2>&1 &
ts_pid=$!
pids+=($ts_pid)
for _ in $(seq 100); do "$bin" ports --control "$sock" >/dev/null 2>&1 && break; sleep 0.1; done
for i in $(seq 1 $n); do
	"$bin" attach --control "$sock" --netns /run/netns/${p}c$i --name web$i --no-resolv-conf >/dev/null
done

# dnsmasq with the same names and addresses.
ip -n ${p}dm link add eth0 type veth peer name eth0 netns ${p}cl
ip -n ${p}dm addr add 203.0.113.1/24 dev eth0
ip -n ${p}cl addr add 203.0.113.2/24 dev eth0
ip -n ${p}dm link set eth0 up
ip -n ${p}cl link set eth0 up
dm_args=(--keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null --user=root --pid-file=
	--listen-address=203.0.113.1 --bind-interfaces --server=127.0.0.1#5300 --cache-size=10000
	--dns-forward-max=1000)
for i in $(seq 1 $n); do dm_args+=(--host-record=web$i.tapswitch,10.90.0.$((i + 1))); done
ip netns exec ${p}dm dnsmasq "${dm_args[@]}" &
dm_pid=$!
pids+=($dm_pid)
sleep 0.5

local_names=$(seq -f 'web%g.tapswitch' -s, 1 $n)
local_names=${local_names%,}
fwd_names=$(seq -f 'f%g.fwd.test' -s, 1 $n)
fwd_names=${fwd_names%,}

# cpu PID: the process's user+system time in clock ticks.
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
hz=$(getconf CLK_TCK)

# Warm the caches: every forwarded name once through each server.
ip netns exec ${p}c1 "$load" -server 10.90.0.1 -names "$fwd_names" -c 1 -d 1s >/dev/null
ip netns exec ${p}cl "$load" -server 203.0.113.1 -names "$fwd_names" -c 1 -d 1s >/dev/null

echo "# DNS: tapswitch vs dnsmasq, $rounds rounds of ${secs}s, $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %-10s %4s %10s %8s %8s %8s %7s %6s %10s\n' server names conc qps p50_us p99_us p999_us errors lost cpu_ms/kq
for r in $(seq 1 "$rounds"); do
	for c in $concs; do
		for kind in local cached; do
			names=$local_names
			[ $kind = cached ] && names=$fwd_names
			order="tapswitch dnsmasq"
			[ $((RANDOM % 2)) -eq 0 ] && order="dnsmasq tapswitch"
			for srv in $order; do
				if [ $srv = tapswitch ]; then ns=${p}c1 addr=10.90.0.1 pid=$ts_pid; else ns=${p}cl addr=203.0.113.1 pid=$dm_pid; fi
				before=$(cpu $pid)
				out=$(ip netns exec $ns "$load" -server $addr -names "$names" -c "$c" -d "${secs}s")
				after=$(cpu $pid)
				eval "$out"
				cpums=$(awk -v t=$((after - before)) -v hz=$hz -v q="$answered" 'BEGIN { if (q > 0) printf "%.3f", t * 1000 / hz / (q / 1000); else print "-" }')
				printf '%-10s %-10s %4s %10s %8s %8s %8s %7s %6s %10s\n' $srv $kind "$c" "$qps" "$p50_us" "$p99_us" "$p999_us" "$errors" "$lost" "$cpums" |
					tee -a "$dir/rows"
			done
		done
	done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# medians over the rounds (qps, p99 in us, CPU ms per 1000 answers):"
printf '%-10s %-10s %4s %10s %8s %10s\n' server names conc qps p99_us cpu_ms/kq
sort -k1,1 -k2,2 -k3,3n "$dir/rows" | awk '
function med(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return a[int((n + 1) / 2)]
}
{ k = $1 " " $2 " " $3; q[k] = q[k] " " $4; p[k] = p[k] " " $6; c[k] = c[k] " " $10; if (!(k in seen)) { seen[k] = 1; order[++n] = k } }
END { for (i = 1; i <= n; i++) { k = order[i]; split(k, f, " "); printf "%-10s %-10s %4s %10s %8s %10s\n", f[1], f[2], f[3], med(q[k]), med(p[k]), med(c[k]) } }'
echo "# tapswitch dns stats:"
"$bin" stats --control "$sock" | grep "^dns:" || true
