#!/usr/bin/env bash
# bench/rootless-compare.sh BIN: rootless networking side by side, as an
# unprivileged user: iperf3 TCP (1 stream) through tapswitch (host uplink,
# --host-loopback), slirp4netns, pasta and gvproxy, at each MTU of MTUS
# (default "1500 65520"), interleaved over ROUNDS rounds (default 3) of
# SECONDS_PER_TEST seconds (default 5), in one run on this machine; TESTS
# picks some of the tests (default "out in-lo in-lo6 in-addr"), TOOLS some
# of the peers (default "tapswitch slirp4netns pasta gvproxy"); BASE=BIN2
# adds a second tapswitch binary as the peer "base" (the unchanged build,
# to measure a change against in the same run; a ts/base column):
#
#   out       container -> a server on the host's 127.0.0.1 (tapswitch: the
#             gateway 10.90.0.1 with --host-loopback; slirp4netns: 10.0.2.2,
#             its default; pasta: its gateway address, which it maps to the
#             host's loopback; gvproxy: 192.168.127.254, its default NAT to
#             127.0.0.1)
#   in-lo     a client on the host's 127.0.0.1 -> a published port -> a
#             server in the container (tapswitch -p, slirp4netns add_hostfwd
#             through its API socket, pasta -t, gvproxy's
#             /services/forwarder/expose)
#   in-lo6    the same from the host's ::1 (tapswitch, base and pasta only:
#             slirp4netns and gvproxy forward IPv4 here; tapswitch runs
#             with --ipv6 and splices to the container's IPv6 address,
#             pasta to the container's ::1)
#   in-addr   the same from the host's own address 203.0.113.1 instead of
#             127.0.0.1 (pasta and tapswitch splice loopback connections
#             but not these)
#
# gvproxy (gvisor-tap-vsock, GVPROXY, default bin/bench/gvproxy, built
# pinned by `make bench-deps`) serves virtual machines: frames come over a
# socket in its own framing, and its gVisor netstack is the gateway
# (192.168.127.1), NAT and DNS. A namespace is attached to it the way a VM's
# guest is, by gvisor-tap-vsock's own forwarder (cmd/vm, "gvforwarder",
# GVFORWARDER, default bin/bench/vm, pinned alike) run inside the container:
# gvproxy `-listen unix://SOCK -mtu MTU -ssh-port -1` (HyperKit framing: a
# 2-byte length before each frame; no SSH forward), and in the container a
# TAP tap0 made by the script (MAC 5a:94:ef:e4:0c:ee, 192.168.127.2/24,
# gvproxy's static lease, default route via 192.168.127.1, MTU MTU), which
# `vm -url unix://SOCK -iface tap0 -preexisting -mtu MTU` moves frames
# between (-preexisting: no DHCP client, the address is set). The published
# port is `POST /services/forwarder/expose {"local": ":5314", "remote":
# "192.168.127.2:5201"}` on the same socket: gvproxy listens on the host
# and dials the container through its netstack.
#
# It prints a table of medians and writes JSON to OUT (default
# bench/results/rootless-DATE.json).
#
# The script needs root only to set the stage: it creates a namespace that
# stands for the host (its own loopback, and a veth link 203.0.113.1/24 and
# 2001:db8:113::1/64 to a second namespace with default routes, which pasta
# copies its addresses from; nothing is sent there), makes /dev/net/tun
# 0666 as ordinary distributions ship it (put back on exit), and runs everything else as
# nobody (setpriv, uid/gid 65534) inside that namespace: the containers are
# `unshare --user --map-root-user --net` processes of nobody's, and
# tapswitch, slirp4netns and pasta run as nobody. Traffic stays on that
# namespace's loopback and in the containers. Everything is removed on exit.
set -euo pipefail

bin=${1:-bin/tapswitch}
base=${BASE:-}
gvproxy=${GVPROXY:-bin/bench/gvproxy}
gvforwarder=${GVFORWARDER:-bin/bench/vm}
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_TEST:-5}
mtus=${MTUS:-1500 65520}
out=${OUT:-bench/results}
[ "$(id -u)" -eq 0 ] || { echo "rootless-compare.sh: needs root to create the stage (it runs the benchmark itself as nobody)" >&2; exit 1; }
for t in ip iperf3 setpriv unshare nsenter slirp4netns pasta socat ss curl "$gvproxy" "$gvforwarder"; do
	command -v "$t" >/dev/null || { echo "rootless-compare.sh: needs $t (make bench-deps)" >&2; exit 1; }
done

p=tswr$$
work=$(mktemp -d)
tun_mode=$(stat -c %a /dev/net/tun)
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	for ns in ${p}h ${p}x; do ip netns del "$ns" 2>/dev/null || true; done
	chmod "$tun_mode" /dev/net/tun
	rm -rf "$work"
}
trap cleanup EXIT

chmod 0666 /dev/net/tun
chmod 0755 "$work"
u=$work/u # nobody's runtime directory
mkdir "$u"
chown 65534:65534 "$u"
cp "$bin" "$work/tapswitch"
[ -z "$base" ] || cp "$base" "$work/base"
cp "$gvproxy" "$work/gvproxy"
cp "$gvforwarder" "$work/gvforwarder"
chmod 0755 "$work/tapswitch" "$work/gvproxy" "$work/gvforwarder"
[ -z "$base" ] || chmod 0755 "$work/base"

ip netns add ${p}h
ip netns add ${p}x
ip -n ${p}h link set lo up
ip -n ${p}h link add eth0 type veth peer name eth0 netns ${p}x
ip -n ${p}h addr add 203.0.113.1/24 dev eth0
ip -n ${p}h link set eth0 up
ip -n ${p}x addr add 203.0.113.254/24 dev eth0
ip -n ${p}x link set eth0 up
ip -n ${p}h route add default via 203.0.113.254
ip -n ${p}h addr add 2001:db8:113::1/64 dev eth0 nodad
ip -n ${p}x addr add 2001:db8:113::fe/64 dev eth0 nodad
ip -n ${p}h -6 route add default via 2001:db8:113::fe

# "${N[@]}" CMD...: run CMD as nobody in the host namespace. `ip netns
# exec`, setpriv and env exec, so $! of `"${N[@]}" CMD &` is CMD's own PID
# (a shell function would put a subshell in between).
N=(ip netns exec ${p}h setpriv --reuid 65534 --regid 65534 --clear-groups env HOME="$u" XDG_RUNTIME_DIR="$u" PATH="$PATH")
# "${E[@]}" PID CMD...: run CMD in the container PID's namespaces (root
# inside); nsenter execs too.
E=("${N[@]}" nsenter --preserve-credentials -U -n -t)

# container: start a rootless container and print its PID. Its lo is up, as
# container runtimes leave it (and pasta does itself); tapswitch splices a
# published port's loopback clients into the container only then.
container() {
	"${N[@]}" unshare --user --map-root-user --net sleep infinity >/dev/null 2>&1 &
	local pid=$!
	# Until unshare execs sleep, the process is not dumpable (setpriv
	# changed its uid) and its namespaces cannot be opened by nobody.
	for _ in $(seq 100); do
		[ "$(cat /proc/$pid/comm 2>/dev/null)" = sleep ] && break
		sleep 0.05
	done
	"${E[@]}" "$pid" ip link set lo up
	echo "$pid"
}

# listening WHERE PORT: wait until a TCP socket listens on PORT, in the host
# namespace (WHERE=host) or in the container WHERE.
listening() {
	for _ in $(seq 100); do
		if [ "$1" = host ]; then
			[ -n "$(ip netns exec ${p}h ss -Hltn "sport = :$2")" ] && return
		else
			[ -n "$(nsenter -t "$1" -n ss -Hltn "sport = :$2")" ] && return
		fi
		sleep 0.05
	done
	echo "nothing listens on $2 in $1" >&2
}

# tcp SERVER_WHERE CLIENT_WHERE TARGET PORT: Gbit/s received by one iperf3
# server on PORT (in the host namespace on 127.0.0.1, or in a container),
# the client in the host namespace or a container ("fail" if it failed
# twice).
tcp() {
	local try r srv
	for try in 1 2; do
		if [ "$1" = host ]; then
			"${N[@]}" iperf3 -s -B 127.0.0.1 -p "$4" -1 >/dev/null 2>&1 &
		else
			"${E[@]}" "$1" iperf3 -s -p 5201 -1 >/dev/null 2>&1 &
		fi
		srv=$!
		if [ "$1" = host ]; then listening host "$4"; else listening "$1" 5201; fi
		if [ "$2" = host ]; then
			r=$("${N[@]}" iperf3 -c "$3" -p "$4" -t "$secs" -f g 2>&1 | awk '/receiver/ {print $(NF-2)}')
		else
			r=$("${E[@]}" "$2" iperf3 -c "$3" -p "$4" -t "$secs" -f g 2>&1 | awk '/receiver/ {print $(NF-2)}')
		fi
		kill "$srv" 2>/dev/null || true
		wait "$srv" 2>/dev/null || true
		[ -n "$r" ] && { echo "$r"; return; }
		echo "iperf3 $2 -> $3:$4 failed (try $try)" >&2
	done
	echo fail
}

# linkmtu PID DEV: the MTU of DEV in the container PID.
linkmtu() { nsenter -t "$1" -n ip -o link show dev "$2" | sed -n 's/.* mtu \([0-9]*\) .*/\1/p'; }

# median RUNS...: the median of the runs that did not fail; "fail" if all
# did, "-" if there were none (a test or peer not run).
median() {
	[ $# -gt 0 ] || { echo -; return; }
	printf '%s\n' "$@" | grep -v fail | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "fail"; else print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-"}'; }

tools=${TOOLS:-tapswitch slirp4netns pasta gvproxy}
[ -z "$base" ] || tools="$tools base"
tests=${TESTS:-out in-lo in-lo6 in-addr}
has() { case " $tools " in *" $1 "*) return 0 ;; esac; return 1; }
declare -A res  # res[mtu,test,tool] = space-separated Gbit/s of every round
declare -A ifmtu

for mtu in $mtus; do
	echo "MTU $mtu: setting up" >&2
	ct= cs= cp= cg= cb= tsd= bd= sd= pd= gd= gf=
	# tsup NAME PORT: start the tapswitch binary NAME ($work/NAME) with a
	# container published on PORT; sets c (container) and d (daemon).
	tsup() {
		c=$(container)
		pids+=("$c")
		"${N[@]}" "$work/$1" run --control "$u/$1.sock" --mtu "$mtu" --host-loopback --dns=false --ipv6 --subnet6 fd42:90::/64 >"$work/$1-$mtu.log" 2>&1 &
		d=$!
		pids+=("$d")
		for _ in $(seq 100); do "${N[@]}" "$work/$1" ports --control "$u/$1.sock" >/dev/null 2>&1 && break; sleep 0.05; done
		"${N[@]}" "$work/$1" attach --pid "$c" -p "$2:5201" --control "$u/$1.sock" >/dev/null
	}
	if has tapswitch; then tsup tapswitch 5311; ct=$c tsd=$d; fi
	if has base; then tsup base 5315; cb=$c bd=$d; fi

	if has slirp4netns; then
		cs=$(container)
		pids+=("$cs")
		"${N[@]}" slirp4netns --configure --mtu="$mtu" --api-socket "$u/slirp.sock" "$cs" tap0 >"$work/slirp-$mtu.log" 2>&1 &
		sd=$!
		pids+=("$sd")
		for _ in $(seq 100); do [ -S "$u/slirp.sock" ] && break; sleep 0.05; done
		echo '{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "0.0.0.0", "host_port": 5312, "guest_port": 5201}}' |
			"${N[@]}" socat - "UNIX-CONNECT:$u/slirp.sock" | grep -q '"return"' || { echo "slirp4netns add_hostfwd failed" >&2; exit 1; }
		for _ in $(seq 100); do [ -n "$(nsenter -t "$cs" -n ip -o -4 addr show dev tap0 2>/dev/null)" ] && break; sleep 0.05; done
		ifmtu[$mtu,slirp4netns]=$(linkmtu "$cs" tap0)
	fi

	if has pasta; then
		cp=$(container)
		pids+=("$cp")
		"${N[@]}" pasta --config-net --mtu "$mtu" -t 5313:5201 -u none -T none -U none -f -q "$cp" >"$work/pasta-$mtu.log" 2>&1 &
		pd=$!
		pids+=("$pd")
		for _ in $(seq 100); do [ -n "$(nsenter -t "$cp" -n ip -o -4 addr show dev eth0 2>/dev/null)" ] && break; sleep 0.05; done
		ifmtu[$mtu,pasta]=$(linkmtu "$cp" eth0)
	fi

	if has gvproxy; then
		cg=$(container)
		pids+=("$cg")
		"${N[@]}" "$work/gvproxy" -listen "unix://$u/gv.sock" -mtu "$mtu" -ssh-port -1 >"$work/gvproxy-$mtu.log" 2>&1 &
		gd=$!
		pids+=("$gd")
		for _ in $(seq 100); do [ -S "$u/gv.sock" ] && break; sleep 0.05; done
		"${E[@]}" "$cg" ip tuntap add dev tap0 mode tap
		"${E[@]}" "$cg" ip link set dev tap0 address 5a:94:ef:e4:0c:ee mtu "$mtu" up
		"${E[@]}" "$cg" ip addr add 192.168.127.2/24 dev tap0
		"${E[@]}" "$cg" ip route add default via 192.168.127.1
		"${E[@]}" "$cg" "$work/gvforwarder" -url "unix://$u/gv.sock" -iface tap0 -preexisting -mtu "$mtu" -stop-if-exist "" >"$work/gvforwarder-$mtu.log" 2>&1 &
		gf=$!
		pids+=("$gf")
		"${N[@]}" curl -sS --fail --unix-socket "$u/gv.sock" -X POST -d '{"local": ":5314", "remote": "192.168.127.2:5201"}' http://gvproxy/services/forwarder/expose ||
			{ echo "gvproxy expose failed" >&2; exit 1; }
		ifmtu[$mtu,gvproxy]=$(linkmtu "$cg" tap0)
	fi
	[ -z "$ct" ] || ifmtu[$mtu,tapswitch]=$(linkmtu "$ct" eth0)
	[ -z "$cb" ] || ifmtu[$mtu,base]=$(linkmtu "$cb" eth0)

	for r in $(seq "$rounds"); do
		echo "MTU $mtu: round $r/$rounds" >&2
		for tool in $(printf '%s\n' $tools | shuf); do
			case $tool in
			tapswitch) c=$ct gw=10.90.0.1 port=5311 ;;
			base) c=$cb gw=10.90.0.1 port=5315 ;;
			slirp4netns) c=$cs gw=10.0.2.2 port=5312 ;;
			pasta) c=$cp gw=203.0.113.254 port=5313 ;;
			gvproxy) c=$cg gw=192.168.127.254 port=5314 ;;
			esac
			for test in $tests; do
				case $test in
				out) res[$mtu,$test,$tool]+="$(tcp host "$c" "$gw" 5201) " ;;
				in-lo) res[$mtu,$test,$tool]+="$(tcp "$c" host 127.0.0.1 "$port") " ;;
				in-lo6)
					case $tool in
					slirp4netns | gvproxy) ;;
					*) res[$mtu,$test,$tool]+="$(tcp "$c" host ::1 "$port") " ;;
					esac
					;;
				in-addr) res[$mtu,$test,$tool]+="$(tcp "$c" host 203.0.113.1 "$port") " ;;
				esac
			done
		done
	done

	# Which path tapswitch's published port took (stats, host uplink).
	for ts in tapswitch base; do
		has $ts || continue
		echo "MTU $mtu: $ts's published port:" $("${N[@]}" "$work/$ts" stats --json --control "$u/$ts.sock" |
			grep -oE '"(publish_accepted|publish_spliced|splice_failed)": ?[0-9]+') >&2
	done
	for pid in $tsd $bd $sd $pd $gf $gd $ct $cb $cs $cp $cg; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
	pids=()
	rm -f "$u/tapswitch.sock" "$u/base.sock" "$u/slirp.sock" "$u/gv.sock"
done

declare -A med
for mtu in $mtus; do
	for test in $tests; do
		for tool in $tools; do
			# shellcheck disable=SC2086
			med[$mtu,$test,$tool]=$(median ${res[$mtu,$test,$tool]:-})
		done
	done
done

echo
printf '%-6s %-8s %10s %12s %8s %8s %8s %9s %9s %9s %8s\n' MTU test tapswitch slirp4netns pasta gvproxy base "ts/slirp" "ts/pasta" "ts/gvp" "ts/base"
for mtu in $mtus; do
	for test in $tests; do
		printf '%-6s %-8s %10s %12s %8s %8s %8s %9s %9s %9s %8s\n' "$mtu" "$test" \
			"${med[$mtu,$test,tapswitch]:--}" "${med[$mtu,$test,slirp4netns]:--}" "${med[$mtu,$test,pasta]:--}" "${med[$mtu,$test,gvproxy]:--}" "${med[$mtu,$test,base]:--}" \
			"$(ratio "${med[$mtu,$test,tapswitch]:-}" "${med[$mtu,$test,slirp4netns]:-}")" \
			"$(ratio "${med[$mtu,$test,tapswitch]:-}" "${med[$mtu,$test,pasta]:-}")" \
			"$(ratio "${med[$mtu,$test,tapswitch]:-}" "${med[$mtu,$test,gvproxy]:-}")" \
			"$(ratio "${med[$mtu,$test,tapswitch]:-}" "${med[$mtu,$test,base]:-}")"
	done
done
echo "(Gbit/s, iperf3 TCP 1 stream, medians of $rounds rounds of ${secs}s, run as nobody; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); interface MTUs seen in the containers:" \
	"$(for mtu in $mtus; do printf '%s:' "$mtu"; for tool in $tools; do printf ' %s %s' "$tool" "${ifmtu[$mtu,$tool]:-}"; done; printf '; '; done))"

mkdir -p "$out"
file=$out/rootless-$(date -u +%Y%m%dT%H%M%SZ).json
{
	printf '{\n  "date": "%s",\n  "kernel": "%s",\n  "rounds": %s,\n  "seconds": %s,\n' "$(date -u +%FT%TZ)" "$(uname -r)" "$rounds" "$secs"
	printf '  "versions": {"tapswitch": "%s", "slirp4netns": "%s", "pasta": "%s", "gvproxy": "%s"},\n' \
		"$("$bin" version 2>/dev/null | head -1 | sed "s/^client: //")" "$(slirp4netns --version | head -1)" "$(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo unknown)" \
		"$("$gvproxy" -version 2>/dev/null | head -1)"
	printf '  "unit": "Gbit/s",\n  "results": ['
	sep=
	for mtu in $mtus; do
		for test in $tests; do
			for tool in $tools; do
				runs=$(echo ${res[$mtu,$test,$tool]:-} | sed 's/fail/null/g; s/ /, /g')
				m=${med[$mtu,$test,$tool]}
				[ "$m" = fail ] || [ "$m" = - ] && m=null
				printf '%s\n    {"mtu": %s, "if_mtu": %s, "test": "%s", "tool": "%s", "median": %s, "runs": [%s]}' \
					"$sep" "$mtu" "${ifmtu[$mtu,$tool]:-null}" "$test" "$tool" "$m" "$runs"
				sep=,
			done
		done
	done
	printf '\n  ]\n}\n'
} >"$file"
echo "wrote $file"
