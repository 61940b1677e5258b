package tap

import "os"

// How a Device reads and writes its TAP: measured, not guessed.
//
// The tun fd is non-blocking and wrapped in an os.File, so a Read that
// finds no frame parks its goroutine in Go's netpoller (epoll) and Close
// wakes it; a Write is one write(2). Under load (a frame waiting) a Read is
// one read(2) either way; the strategies differ in how an idle reader waits.
//
// The alternative measured was a reader locked to its OS thread
// (runtime.LockOSThread) that reads the non-blocking fd and waits in
// poll(2) on the fd and an eventfd that Close signals. On this 2-core
// machine, shared with other jobs (load average 8 to 12), tapswitch with
// offloads, make bench QUICK=1 ROUNDS=3, medians [min-max]:
//
//	                     netpoller            locked thread + poll
//	TCP 1 stream Gbit/s  4.57 [3.99-4.77]     4.77 [4.30-5.15]
//	TCP 2 streams        6.63 [5.63-6.90]     6.16 [5.79-6.92]
//	UDP 64 B kpps        53.6 [34.2-60.8]     37.5 [34.2-43.5]
//	ping avg µs          296 [181-401]        430 [372-267784]
//
// and 1000 pings 2 ms apart (quiet, then beside a TCP stream): netpoller
// p99 1.9 ms / 12.5 ms, max 10 ms / 66 ms; locked thread p99 538 ms /
// 89 ms, max 726 ms / 654 ms. Throughput is a wash, and the locked thread
// loses badly on latency: when poll(2) returns, the thread must get a P
// back from the scheduler (sysmon took it during the blocking call), and
// a locked goroutine can run on no other thread, so on a busy machine it
// waits for a handoff; a goroutine woken by the netpoller runs on whichever
// thread has a P. The netpoller is kept.
//
// An adaptive poll was measured too, and is not used: a Read that found no
// frame right after one kept trying the non-blocking fd (read(2), then
// runtime.Gosched) for up to a spin before parking in the netpoller, on
// every port (`run --poll-spin`). A plain spin made ping worse: while a
// goroutine spins its P keeps finding it runnable and does not poll the
// network, so the reply another port just got waits for the spin to end
// (make bench QUICK=1, load 11-13: ping 270 µs without, 387 with 50 µs,
// 5133 with 10 ms, which also starved the iperf3 processes of the 2
// cores). Spinning only on hot ports (the last wait shorter than the spin)
// did not win either: ROUNDS=3 make bench on 2026-12-03 (load average 8.7
// at start, another job keeping both cores busy), tapswitch against
// tapswitch with a 20 µs spin, medians: TCP 1 stream 7.44 / 6.58 Gbit/s,
// 2 streams 5.86 / 6.50, UDP 64 B delivered 27.1 / 15.5 kpps, loss-free
// 9.99 / 46.8, ping 163 / 348 µs. Pings 10 ms apart never find a reader
// awake; only a busy poll would, at the cost of a core.
//
// Batching does not apply to a TAP: readv/writev move one frame per call
// (the iovecs are pieces of one frame), recvmmsg/sendmmsg fail with
// ENOTSOCK, and the kernel reads one skb per read(2). What batches is
// offloads: one TSO super-frame of 64 KiB is one write of about 4.5 µs
// instead of 45 writes of about 2 µs (tap_linux.go, offloadSets).
//
// Multiqueue TAP (IFF_MULTI_QUEUE) was measured too, and is not used. The
// experiment gave every TAP 2 queues (TUNSETIFF with IFF_MULTI_QUEUE and the
// same name on a second /dev/net/tun fd, same vnet header and offloads,
// before the move into the namespace) and the switch an ingress goroutine
// per queue (each with its own buffer and GSO segment buffer). The kernel
// steers a flow the container sends to the queue its frames were last
// written to (tun_automq_select_queue, tun_flow_update), so writing every
// frame to queue 0 leaves queue 1 idle (42 of 8.3 million packets in one
// run); the experiment therefore wrote a frame read from queue i of one port
// to queue i of the other, and then both queues carried the traffic (6.7 and
// 8.3 GB sent by one container over a run). Same machine, load average 1.6
// to 3.0 at start, both variants interleaved in every round by the bench
// harness (bin/tsbench -quick -rounds 5 -only
// linux-bridge,tapswitch,tapswitch-mq2 with a variant mq2 that started the
// daemon with 2 queues), two runs, medians [min-max] of the 10 rounds:
//
//	                     1 queue              2 queues
//	TCP 1 stream Gbit/s  7.20 [5.67-7.84]     6.59 [5.58-7.17]
//	TCP 2 streams        8.67 [7.59-9.97]     8.34 [7.14-9.55]
//	UDP 64 B kpps        95.7 [82.8-120]      91.3 [84.1-99.8]
//	UDP loss-free kpps   79.9 [59.5-99.9]     79.6 [59.8-79.9]
//	ping avg µs          159 [121-217]        180 [154-266]
//
// (the Linux bridge in the same rounds: 9.74, 14.3, 121, 104, 73.5; switch
// CPU during TCP 1 stream 83 % and 81 %). Writing everything to queue 0 was
// no better (one run of 3 rounds, load 0.9, 1 queue / 2 queues): TCP 7.08 /
// 6.63 and 8.17 / 8.30 Gbit/s, UDP 98.6 / 93.0 kpps, ping 174 / 161 µs. Two
// queues win nothing and lose a little: the machine is the limit, not the
// one reader (machine CPU 133 % to 194 % in the TCP and UDP tests), one
// stream stays on one queue anyway, and with two cores the iperf3 client and
// server take what the switch's two busy ingress goroutines (one per
// direction) leave; a second reader per port only adds goroutines competing
// for the same two cores. One queue is kept. On a machine with more cores
// than busy threads this would be worth measuring again.
//
// io_uring on the tun fd was measured too (issue 15), and is not used. The
// experiment (commit a4228ef on branch uring, with a bench variant and an
// integration test in the next two commits, and a third wait in 85e6012:
// uring-defer) was a backend behind TAPSWITCH_TAP_IO, raw
// io_uring_setup/enter/register through
// golang.org/x/sys/unix (no Go port of liburing is served here, and the
// few ABI structures are stable). Reads: one IORING_OP_READ_MULTISHOT
// armed on the fd, into a provided buffer ring of 32 buffers of 64 KiB;
// Read took the next CQE and copied the frame into the caller's buffer
// (the Port contract: the caller owns buf). Writes: a second ring,
// filled by whichever writer won a compare-and-swap token; it sent its own
// frame from the caller's buffer plus any frames other writers had copied
// into a lock-free queue meanwhile, in one io_uring_enter waiting for their
// completions (a TAP write completes inline: no iou-wrk thread was seen
// during a bench run).
// The reader waited either on an eventfd registered with the ring and
// parked in the netpoller ("uring"), or blocked in io_uring_enter with
// min_complete 1 ("uring-enter"), or did so on a read ring set up with
// IORING_SETUP_DEFER_TASKRUN and SINGLE_ISSUER, the reading goroutine
// locked to its thread, so that the tun read ran in its own io_uring_enter
// ("uring-defer"). Zero allocations per Read and Write, the Device tests
// passed on every backend, and ping and iperf3 worked through a daemon on
// each.
//
// Measured on 2026-12-03 with the machine shared by other jobs (load
// average 14 to 22 on the 2 cores, so only ratios within one run count).
// bin/tsbench -quick -rounds 3 -only linux-bridge,tapswitch -variants
// uring,uring-enter, two runs, medians (bridge / read / uring / uring-enter):
//
//	                     run 1 (load 15.0)          run 2 (load 16.6)
//	TCP 1 stream Gbit/s  3.13 / 4.32 / 5.31 / 6.40  3.16 / 6.94 / 4.70 / 6.10
//	TCP 2 streams        3.69 / 2.35 / 5.69 / 6.07  3.43 / 5.77 / 3.65 / 8.29
//	UDP 64 B kpps        62.9 / 12.7 / 29.1 / 21.8  52.9 / 24.6 / 19.9 / 15.0
//	UDP loss-free kpps   58.7 / 26.1 / 17.5 / 33.9  39.2 / 18.9 / 54.4 / 25.1
//	ping avg µs          84 / 228 / 804 / 1284      89 / 2092 / 372 / 378
//	CPU % per Gbit/s     - / 6.6 / 8.1 / 8.7        - / 6.7 / 9.3 / 8.4
//
// and a third run with uring-defer in place of uring-enter (load 20.2;
// bridge / read / uring / uring-defer): TCP 1 stream 3.14 / 6.83 / 2.91 /
// 3.02 Gbit/s, 2 streams 2.67 / 8.75 / 6.49 / 3.66, UDP 64 B 56.5 / 17.6 /
// 31.0 / 12.3 kpps, loss-free 71.0 / 16.1 / 19.8 / 47.4, ping 74 / 317 /
// 7851 / 241 µs, CPU % per Gbit/s - / 6.0 / 6.2 / 7.0.
//
// The bridge slower than tapswitch shows how noisy that was, so three
// daemons (read, uring, uring-enter) were then run side by side, each
// with two namespaces, and measured in interleaved rounds: 4 rounds of
// iperf3 -u -l 64 -b 0 -t 3 (the daemon's CPU time from /proc per frame
// delivered) and 4 rounds of 100 pings 10 ms apart, run twice
// (read / uring / uring-enter):
//
//	                     first                  second
//	UDP 64 B kpps        26.3 / 34.5 / 27.6     26.9 / 42.3 / 27.7
//	daemon CPU µs/frame  9.19 / 7.97 / 8.98     10.7 / 6.73 / 10.1
//	ping median µs       186 / 311 / 287        250 / 298 / 255
//	ping p90 µs          273 / 6330 / 3700      538 / 1600 / 542
//
// and a third time with uring-defer in place of uring-enter (load 20 to
// 22; read / uring / uring-defer): UDP 64 B 33.8 / 33.1 / 35.2 kpps, CPU
// 6.90 / 6.69 / 6.76 µs per frame, ping median 171 / 260 / 238 µs, p90
// 263 / 498 / 909 µs.
//
// perf stat -p (raw_syscalls:sys_enter, the threads present when it
// started) on the daemon over 4 s of UDP 64 B, one run per backend beside
// the others' load, counted 1.25 / 0.87 / 0.68 system calls per forwarded
// frame (read / uring / uring-enter) and 0.072 / 0.095 / 0.066 context
// switches. A CPU profile under UDP 64 B
// (the daemon got 7 to 11 % of a core at that load) had 71 % of samples in
// system calls with read(2)/write(2) (Read 46 % cumulative, Write 39 %),
// and 73 % with uring, nearly all io_uring_enter of the writes; taking
// frames from the CQ cost 17 %.
//
// So io_uring saves system calls per frame under load (the CQ fills while
// the switch forwards), and "uring" delivered more small datagrams for
// less CPU per frame in two of the three interleaved runs (level in the
// third), but it lost on the figures that must not get worse: ping in
// every interleaved run (median ×1.2 to ×1.7, p90 ×1.9 to ×23) and in two
// of the three bench runs, CPU per Gbit/s of TCP in every bench run (8.1,
// 9.3, 6.2 against 6.6, 6.7, 6.0), and TCP 1 stream in two of three.
// The likely causes, from how the kernel does it rather than measured one
// by one: a multishot read completes in task work of the thread that armed
// it, which the kernel must wake first; only then does the CQE signal the
// eventfd and the netpoller wake the reading goroutine, two wakeups where
// read(2) needs one, and on a busy machine the second one shows.
// uring-enter and uring-defer, where the thread that waits is the one that
// runs the read, came closer on ping (median ×1.0 to ×1.5) but not level,
// and gained only 3 to 5 % on UDP: an io_uring_enter that waits returns at
// the first completion, so a frame that finds the reader asleep still
// costs a system call and a wakeup, and the locked thread of uring-defer
// has the handoff cost described above. Every frame, up to a
// 64 KiB super-frame, is copied out of the provided buffer, which TCP pays
// for. Writes cannot batch much: each port is written by the other ports'
// ingress goroutines, one frame at a time, and an io_uring_enter runs the
// same tun_get_user as a write(2) (batch sizes were not counted). Not
// tried: a Port that lends the provided buffer to the switch instead of a
// copy (a change of the Port contract), and a quiet machine, where the
// wakeup that io_uring adds may weigh less. The experiment's code has two
// defects, found after the measurements and not mended since it goes: go
// test -race flags the writers' queue head, which handOff reads after
// giving the token back, and in 2 of 8 runs of its integration test a
// port's multishot read failed (EBADFD once) and the daemon dropped the
// port, cause not found. The runs above lost no port as far as their
// figures show (every round delivered frames, every ping was answered).
//
// A veth pair read through an AF_PACKET ring was measured too (issue
// 15), and is not used. The experiment (commit 31a83af on branch
// afpacket, package switch/afpacket; the bench variant afpacket and an
// integration test in e889b28) gave a container a veth pair instead of a
// TAP when TAPSWITCH_TAP_IO=afpacket: the container's end configured as
// the TAP is (name, MAC, MTU, addresses, routes; a veth has every offload
// on), the switch's end left in the daemon's namespace (IPv6 off, MTU
// 65535, up), under an AF_PACKET socket with PACKET_VNET_HDR,
// PACKET_QDISC_BYPASS and PACKET_IGNORE_OUTGOING in the netpoller
// (RawConn.Read). Receive: a TPACKET_V2 ring of 1024 slots of 2 KiB; a
// frame that does not fit a slot (a TSO super-frame) the kernel also
// queues whole on the socket (PACKET_COPY_THRESH, TP_STATUS_COPY) and Read
// took it with one recv(2); an 802.1Q tag the veth's receive path had
// moved into the skb was put back. Send: one write(2) per frame
// (packet_snd). Zero allocations per Read and Write, the Device tests that
// apply passed on it, ping and iperf3 worked through a daemon on it.
//
// Not TPACKET_V3, from reading net/packet/af_packet.c: tpacket_rcv calls
// sk_data_ready for every frame only for V1/V2; for V3 a reader is woken
// when the kernel retires a block (full, or its timer, at least 1 ms), so
// every ping would wait up to a millisecond per hop. Not a TX ring: frames
// come to Port.Write one at a time from the other ports' ingress
// goroutines, so a ring would batch only by holding frames back, and
// tpacket_snd serializes its callers on a mutex (pg_vec_lock) anyway.
// Rootless, the switch's end would have to live in a namespace the
// daemon's user namespace owns and the veth be made by the helper there;
// the experiment was root only.
//
// Measured on 2026-12-03, machine shared (load average 6 to 16 on the 2
// cores). bin/tsbench -quick -only linux-bridge,tapswitch -variants
// afpacket, three runs (rounds, load average at start), medians (bridge
// / TAP / afpacket):
//
//	                     run 1, 3 rounds, 9.3    run 2, 3 rounds, 13.7   run 3, 5 rounds, 9.5
//	TCP 1 stream Gbit/s  8.13 / 5.89 / 6.38      9.68 / 7.46 / 5.94      12.2 / 8.76 / 7.31
//	TCP 2 streams        6.67 / 4.36 / 6.41      10.7 / 7.26 / 6.18      12.0 / 7.85 / 8.71
//	TCP over IPv6        4.12 / 7.83 / 6.23      8.77 / 6.18 / 6.50      10.7 / 6.91 / 7.53
//	UDP 64 B kpps        28.9 / 27.6 / 34.9      66.6 / 31.5 / 40.1      75.0 / 54.7 / 54.3
//	UDP loss-free kpps   62.9 / 19.9 / 16.2      72.0 / 24.3 / 39.8      75.1 / 39.8 / 39.7
//	ping avg µs          63 / 1000 / 1659        82 / 1025 / 175         45 / 231 / 282
//	CPU % per Gbit/s     - / 6.3 / 7.8           - / 7.5 / 9.5           - / 6.9 / 8.9
//
// Then two daemons side by side (TAP, afpacket), each in its own
// namespace with two containers, interleaved in 3 rounds of iperf3 -t 4
// (the daemon's CPU time from /proc per GB received), iperf3 -u -l 64 -b
// 0 -t 3 (CPU per frame delivered; perf stat -e raw_syscalls:sys_enter -p
// on the daemon, every thread) and 100 pings 10 ms apart, load 5.8 to 7.7
// (TAP / afpacket, rounds 1, 2, 3):
//
//	TCP 1 stream Gbit/s     6.52/7.18  7.87/7.52  7.48/6.58
//	daemon CPU s per GB     .668/.753  .632/.737  .616/.662
//	UDP 64 B kpps           18.1/27.4  14.3/37.5  26.0/22.3
//	CPU µs per frame        15.4/16.3  30.9/11.8  13.1/16.6
//	system calls per frame  4.57/2.98  10.2/2.05  3.84/3.21
//	ping avg µs             182/289    370/1551   238/401
//
// and once more with slots of 128 KiB (128 of them), so that super-frames
// came from the ring too, load 3.6 to 5.0: TCP 7.51/6.54, 8.45/7.27,
// 8.00/7.61 Gbit/s; CPU .718/.773, .712/.672, .779/.694 s per GB; UDP
// 30.7/32.6, 34.0/35.0, 38.7/31.0 kpps; ping 290/422, 317/345, 335/448 µs.
//
// So the ring does what it promises, fewer system calls per frame under
// load (a busy reader takes frame after frame from the ring), and
// delivered more small datagrams in 6 of the 9 comparisons, but it lost
// what must not get worse: CPU per Gbit/s in all three bench runs and in
// every round with 2 KiB slots, TCP 1 stream in two of three bench runs
// and in every round with large slots, and ping in two of three bench
// runs and in all six interleaved rounds. What the kernel does explains
// it: a veth's transmit from the container queues the skb on the
// backlog (netif_rx) and the NET_RX softirq delivers it to the packet
// socket, where tun_net_xmit only puts the skb in the TAP's ptr_ring; the
// ring then holds a copy the switch must copy again into the caller's
// buffer (the Port contract), and a super-frame costs an skb_clone, a
// 2 KiB copy into its slot and a recv(2) that copies it whole, more than
// the TAP's one read(2); the frame also goes on to the switch end's own IP
// stack (ip_rcv drops it as PACKET_OTHERHOST) after the packet socket.
// Sending is a write(2) per frame either way (packet_snd builds the skb as
// tun_get_user does). Not tried: a Port that lends the ring slot instead of
// a copy (a change of the Port contract), GRO on the switch's end (veth
// NAPI), and a quiet machine.
//
// A vhost-net backend (the TAP's frames moved by the kernel's vhost worker
// between the TAP and virtqueues in the switch's memory, as DPDK's
// virtio-user exception path does) could not be tried on this machine: its
// kernel (6.18.44-fc) has no vhost_net. There is no /dev/vhost-net, no
// misc minor 238 in /proc/misc, no vhost_net_open or vhost_dev_init in
// /proc/kallsyms (only the vhost_task helpers), and no /lib/modules to
// load it from. On a kernel with it, it is the one backend left that
// changes who copies, rather than how the switch waits.
//
// A CPU profile of the daemon under iperf3 (TAPSWITCH_CPUPROFILE) puts
// 85 % of its time in the read(2) and write(2) system calls (a TAP write
// runs the receiving container's network stack in the writer's context),
// about 9 % in the scheduler and netpoll, and the switching itself (parse,
// FDB, counters) near 1 %.

// offloadsOff is TAPSWITCH_TAP_OFFLOADS=off in the environment: every
// Device is created without offloads, as with Config.NoOffloads. It exists
// for measurements (make bench VARIANTS=nooffload).
var offloadsOff = os.Getenv("TAPSWITCH_TAP_OFFLOADS") == "off"
