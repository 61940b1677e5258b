#!/usr/bin/env bash
# bench/podman-compare.sh BIN CNI_DIR: how long `podman run -d -p` takes with
# tapswitch's CNI plugin against podman's own CNI bridge (the default
# network's plugins: bridge, host-local, portmap, firewall, tuning, as
# podman 4.3 writes them for cni-podman0), interleaved over ROUNDS rounds
# (default 10), in one run. Prints each time and the medians.
#
# Root. Everything happens inside a namespace of the script's own (its
# "host": the daemon, podman, the bridge and its iptables rules live
# there), with podman's storage, configuration and conflists in a temporary
# directory (CONTAINERS_CONF, --cni-config-dir); host-local's leases in
# /var/lib/cni/networks/NAME are removed on exit. Nothing is sent.
# nsenter --net, not `ip netns exec`: the latter gives podman a mount
# namespace of its own, whose /run/netns/netns-* mounts the daemon cannot
# see.
set -euo pipefail

bin=${1:-bin/tapswitch}
cnidir=${2:-bin/cni}
rounds=${ROUNDS:-10}
[ "$(id -u)" -eq 0 ] || { echo "podman-compare.sh: needs root" >&2; exit 1; }
for t in ip nsenter podman runc conmon; do
	command -v $t >/dev/null || { echo "podman-compare.sh: needs $t (make deps)" >&2; exit 1; }
done
[ -e /usr/lib/cni/bridge ] || { echo "podman-compare.sh: needs containernetworking-plugins (make bench-deps)" >&2; exit 1; }
bin=$(realpath "$bin") cnidir=$(realpath "$cnidir")

ns=tspm$$
bridgenet=tsbr$$
work=$(mktemp -d)
daemon=
leases_dir_made=
[ -d /var/lib/cni/networks ] || leases_dir_made=1
pm() {
	CONTAINERS_CONF=$work/containers.conf nsenter --net=/run/netns/$ns podman --root $work/root --runroot $work/runroot \
		--tmpdir $work/tmp --storage-driver vfs --cni-config-dir $work/net.d "$@"
}
cleanup() {
	pm rm -a -f -t 0 >/dev/null 2>&1 || true
	pm system reset -f >/dev/null 2>&1 || true
	if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
	ip netns del $ns 2>/dev/null || true
	rm -rf "$work" /var/lib/cni/networks/$bridgenet
	if [ -n "$leases_dir_made" ]; then rmdir /var/lib/cni/networks 2>/dev/null || true; fi
}
trap cleanup EXIT

ip netns add $ns
ip -n $ns link set lo up
mkdir -p $work/net.d $work/img/bin $work/img/www
cat > $work/containers.conf <<CONF
[containers]
default_ulimits = []
[network]
network_backend = "cni"
cni_plugin_dirs = ["$cnidir", "/usr/lib/cni"]
network_config_dir = "$work/net.d"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
enable_port_reservation = false
CONF
cat > $work/net.d/tsnet.conflist <<CONF
{"cniVersion":"1.0.0","name":"tsnet","plugins":[{"type":"tapswitch","control":"$work/ctl.sock","capabilities":{"portMappings":true}}]}
CONF
cat > $work/net.d/$bridgenet.conflist <<CONF
{"cniVersion":"0.4.0","name":"$bridgenet","plugins":[
 {"type":"bridge","bridge":"$bridgenet","isGateway":true,"ipMasq":true,"hairpinMode":true,
  "ipam":{"type":"host-local","routes":[{"dst":"0.0.0.0/0"}],"ranges":[[{"subnet":"10.92.0.0/24","gateway":"10.92.0.1"}]]}},
 {"type":"portmap","capabilities":{"portMappings":true}},
 {"type":"firewall"},
 {"type":"tuning"}]}
CONF
cp "$(command -v busybox)" $work/img/bin/busybox
ln -s busybox $work/img/bin/httpd
echo hello > $work/img/www/index.html
tar -C $work/img -cf $work/img.tar .
pm import $work/img.tar localhost/tsbusybox >/dev/null

nsenter --net=/run/netns/$ns "$bin" run --control $work/ctl.sock >$work/daemon.log 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S $work/ctl.sock ] && break; sleep 0.05; done

declare -A times
for r in $(seq "$rounds"); do
	for net in tsnet $bridgenet; do
		s=$(date +%s%N)
		pm run -d --network $net -p 18280:80 --name bench localhost/tsbusybox httpd -f -p 80 -h /www >/dev/null
		e=$(date +%s%N)
		times[$net]+="$(( (e - s) / 1000000 )) "
		pm rm -f -t 0 bench >/dev/null
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
echo "podman run -d -p 18280:80 (ms), $rounds rounds interleaved:"
printf '%-22s %8s   %s\n' network median runs
printf '%-22s %8s   %s\n' "tapswitch (tsnet)" "$(echo ${times[tsnet]} | median)" "${times[tsnet]}"
printf '%-22s %8s   %s\n' "podman CNI bridge" "$(echo ${times[$bridgenet]} | median)" "${times[$bridgenet]}"
