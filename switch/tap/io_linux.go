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
// Batching does not apply to a TAP: readv/writev move one frame per call
// (the iovecs are pieces of one frame), recvmmsg/sendmmsg fail with
// ENOTSOCK, and the kernel reads one skb per read(2). What batches is
// offloads: one TSO super-frame of 64 KiB is one write of about 4.5 µs
// instead of 45 writes of about 2 µs (tap_linux.go, offloadSets).
//
// Multiqueue TAP (IFF_MULTI_QUEUE, a reader per queue) is not used and was
// not measured: a TCP flow hashes to one queue, so one stream gains nothing,
// and with two cores the iperf3 client and server already take what the
// switch's two busy ingress goroutines (one per direction) leave.
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
