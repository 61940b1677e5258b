package tap

import (
	"fmt"
	"os"
)

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
// A CPU profile of the daemon under iperf3 (TAPSWITCH_CPUPROFILE) puts
// 85 % of its time in the read(2) and write(2) system calls (a TAP write
// runs the receiving container's network stack in the writer's context),
// about 9 % in the scheduler and netpoll, and the switching itself (parse,
// FDB, counters) near 1 %.

// offloadsOff is TAPSWITCH_TAP_OFFLOADS=off in the environment: every
// Device is created without offloads, as with Config.NoOffloads. It exists
// for measurements (make bench VARIANTS=nooffload).
var offloadsOff = os.Getenv("TAPSWITCH_TAP_OFFLOADS") == "off"

// checkTapIO returns ErrBadTapIO when TAPSWITCH_TAP_IO names no backend.
func checkTapIO() error {
	switch tapIO {
	case "", ioReadWrite, ioUring, ioUringEnter, ioUringDefer:
		return nil
	}
	return fmt.Errorf("%w, not %q", ErrBadTapIO, tapIO)
}

// startIO sets up the backend TAPSWITCH_TAP_IO names for d, whose tun fd
// is fd: nothing for read(2)/write(2), rings for io_uring.
func (d *Device) startIO(fd int) error {
	if tapIO != ioUring && tapIO != ioUringEnter && tapIO != ioUringDefer {
		return nil
	}
	u, err := newUringIO(fd, d.name, tapIO == ioUringEnter, tapIO == ioUringDefer)
	if err != nil {
		return err
	}
	d.u = u
	return nil
}
