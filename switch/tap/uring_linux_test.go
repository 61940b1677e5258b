package tap

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	vswitch "github.com/tapswitch/tapswitch/switch"
)

// The Device tests that move frames run against every backend of
// TAPSWITCH_TAP_IO: read(2)/write(2) and both io_uring variants.

// tapIOs are the backends the tests cover.
var tapIOs = []string{ioReadWrite, ioUring, ioUringEnter, ioUringDefer}

// forEachIO runs fn as a subtest per backend, with tapIO set to it.
func forEachIO(t *testing.T, fn func(t *testing.T)) {
	for _, io := range tapIOs {
		t.Run(io, func(t *testing.T) {
			saved := tapIO
			tapIO = io
			defer func() { tapIO = saved }()
			fn(t)
		})
	}
}

func TestFramesARP(t *testing.T)          { forEachIO(t, testFramesARP) }
func TestFramesPacketSocket(t *testing.T) { forEachIO(t, testFramesPacketSocket) }
func TestClose(t *testing.T)              { forEachIO(t, testClose) }
func TestCloseUnblocksRead(t *testing.T)  { forEachIO(t, testCloseUnblocksRead) }
func TestNetnsDeleted(t *testing.T)       { forEachIO(t, testNetnsDeleted) }
func TestReadWriteAllocs(t *testing.T)    { forEachIO(t, testReadWriteAllocs) }
func TestConcurrentWrites(t *testing.T)   { forEachIO(t, testConcurrentWrites) }

// readDeadline makes d's Reads fail after timeout, until the returned
// function is called. The io_uring backends have no deadline: there the
// Device is closed instead, which fails the test as well.
func readDeadline(t *testing.T, d *Device, timeout time.Duration) (stop func()) {
	t.Helper()
	if d.u != nil {
		tm := time.AfterFunc(timeout, func() { d.Close() })
		return func() { tm.Stop() }
	}
	if err := d.f.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	return func() { d.f.SetReadDeadline(time.Time{}) }
}

// testConcurrentWrites writes frames from several goroutines at once, so
// that the io_uring backend queues frames for the token holder's batch
// (and finds its queue full), and checks that every frame reached the TAP: its
// rx_packets inside the namespace (the kernel drops the unknown EtherType
// after counting it).
func testConcurrentWrites(t *testing.T) {
	requireRoot(t)
	name, path := newNetns(t)
	run(t, "ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
	d := create(t, Config{Netns: path, Name: "eth0", MAC: testMAC})
	rxPackets := func() uint64 {
		var n uint64
		withHandle(t, path, func(h *netlink.Handle) {
			l, err := h.LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			n = l.Attrs().Statistics.RxPackets
		})
		return n
	}
	before := rxPackets()
	const writers, frames = 4, 2000
	var wg sync.WaitGroup
	accepted := make([]uint64, writers)
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			frame := ethernet(testMAC, peerMAC, etherTypeTest, []byte(fmt.Sprintf("writer %d", w)))
			buf := append(make([]byte, vswitch.Headroom), frame...)
			for range frames {
				n, err := d.Write(buf, vswitch.Headroom)
				if err != nil || n != len(frame) {
					errs[w] = fmt.Errorf("Write = %d, %w, want %d", n, err, len(frame))
					return
				}
				accepted[w]++
			}
		})
	}
	wg.Wait()
	var sum uint64
	for w := range writers {
		if errs[w] != nil {
			t.Fatalf("writer %d: %v", w, errs[w])
		}
		sum += accepted[w]
	}
	// Stats are read after every Write has returned; queued frames were
	// sent by then (the last holder drains the queue before it leaves).
	if got := rxPackets() - before; got != sum {
		t.Errorf("rx_packets of the TAP grew by %d, want the %d frames Write accepted", got, sum)
	}
}

func TestBadTapIO(t *testing.T) {
	saved := tapIO
	tapIO = "epoll"
	defer func() { tapIO = saved }()
	_, err := Create(Config{Name: "eth0", MAC: testMAC})
	if !errors.Is(err, ErrBadTapIO) || !strings.Contains(err.Error(), `"epoll"`) {
		t.Errorf("Create with TAPSWITCH_TAP_IO=epoll = %v, want ErrBadTapIO naming it", err)
	}
}

// TestFrameQueue checks the writers' queue alone: FIFO, bounded, and
// safe for many producers (run with -race).
func TestFrameQueue(t *testing.T) {
	var q frameQueue
	q.init(4)
	for i := range 4 {
		if !q.put([]byte{byte(i)}) {
			t.Fatalf("put %d into a queue of 4 failed", i)
		}
	}
	if q.put([]byte{9}) {
		t.Fatal("put into a full queue succeeded")
	}
	if q.put(nil) || q.put(make([]byte, vswitch.MaxFrame+1)) {
		t.Fatal("put of an empty or too big frame succeeded")
	}
	for i := range uint32(4) {
		if f := q.peek(i); len(f) != 1 || f[0] != byte(i) {
			t.Fatalf("peek(%d) = %v, want [%d]", i, f, i)
		}
	}
	q.drop(2)
	if f := q.peek(0); f[0] != 2 {
		t.Fatalf("after drop(2), peek(0) = %v, want [2]", f)
	}
	if !q.put([]byte{4}) || !q.put([]byte{5}) || q.put([]byte{6}) {
		t.Fatal("the two freed cells did not take exactly two frames")
	}
	q.drop(4)
	if q.ready() {
		t.Fatal("queue ready after everything was dropped")
	}

	// Producers put 1000 numbered frames each while one consumer drains:
	// each producer's frames come out in its order, none lost.
	q.init(16)
	const producers, each = 4, 1000
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := 0; i < each; {
				if q.put([]byte{byte(p), byte(i >> 8), byte(i)}) {
					i++
				}
			}
		})
	}
	next := make([]int, producers)
	for got := 0; got < producers*each; {
		f := q.peek(0)
		if f == nil {
			continue
		}
		p, i := int(f[0]), int(f[1])<<8|int(f[2])
		if i != next[p] {
			t.Fatalf("producer %d: frame %d, want %d", p, i, next[p])
		}
		next[p]++
		q.drop(1)
		got++
	}
	wg.Wait()
}
