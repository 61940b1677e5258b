package integration

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/checksum"
)

// sendRetry sends b to sa on the raw socket fd, again while the queue is
// full (ENOBUFS, EAGAIN: the TAP's queue, until the switch reads it).
func sendRetry(fd int, b []byte, sa syscall.Sockaddr) error {
	for {
		err := syscall.Sendto(fd, b, 0, sa)
		if err != syscall.ENOBUFS && err != syscall.EAGAIN {
			return err
		}
	}
}

// macFlood sends n frames from eth0 of ns, each from another source MAC
// (02:aa:00:00:00:00 + i, locally administered) to an unknown unicast MAC,
// with the local experimental EtherType 0x88b5: frames for the switch
// only, which nothing answers and no IP stack takes.
func macFlood(t *testing.T, ns string, n int) {
	t.Helper()
	htons := func(v uint16) uint16 { return v<<8 | v>>8 }
	inNS(t, ns, func() error {
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		sa := &syscall.SockaddrLinklayer{Protocol: htons(0x88b5), Ifindex: ifi.Index}
		frame := make([]byte, 60)
		copy(frame, []byte{0x02, 0xff, 0xff, 0, 0, 1, 0x02, 0xaa})
		binary.BigEndian.PutUint16(frame[12:], 0x88b5)
		for i := range n {
			binary.BigEndian.PutUint32(frame[8:], uint32(i))
			if err := sendRetry(fd, frame, sa); err != nil {
				return fmt.Errorf("frame %d: %w", i, err)
			}
		}
		return nil
	})
}

// TestFDBEvictionUnderFlood: an --allow-spoof port floods the MAC table
// (--fdb-max 1000) with 3000 source addresses; containers attached
// afterwards are still learned (the flooder's oldest entries are evicted),
// so their unicast reaches only them and not the flooder.
func TestFDBEvictionUnderFlood(t *testing.T) {
	requireRoot(t, "ping")
	d := startDaemon(t, "--fdb-max", "1000")
	flood, c3, c4 := newNS(t), newNS(t), newNS(t)
	d.attach(t, flood, "flood", "--allow-spoof")
	macFlood(t, flood, 3000)
	eventually(t, 10*time.Second, "the flood learned", func() bool {
		return cliJSON[api.Stats](t, d, "stats", "--json").FDB.Evicted > 0
	})
	p3 := d.attach(t, c3, "c3")
	d.attach(t, c4, "c4")
	ping(t, c4, ip(p3))
	fdb := cliJSON[[]api.FDBEntry](t, d, "fdb", "--json")
	if !slices.ContainsFunc(fdb, func(e api.FDBEntry) bool { return e.Port == "c3" && e.MAC == p3.MAC }) {
		t.Errorf("c3's MAC %s not learned after the flood (%d entries)", p3.MAC, len(fdb))
	}
	st := cliJSON[api.Stats](t, d, "stats", "--json").FDB
	t.Logf("fdb after the flood: %d entries, learned %d, evicted %d, limit_total %d", st.Entries, st.Learned, st.Evicted, st.LimitTotal)
	if st.Entries > 1000 {
		t.Errorf("%d entries, over --fdb-max 1000", st.Entries)
	}

	// c4's pings to c3 are captured on c3 and not on the flooder.
	var out bytes.Buffer
	c := d.startCapture(t, &out, "c3,flood", "-w", "-", "icmp")
	ping(t, c4, ip(p3))
	c.stop(t)
	pkts, _ := readPCAPNG(t, &out)
	on := map[string]int{}
	for _, p := range pkts {
		if p.icmpEcho() != "" {
			on[p.iface]++
		}
	}
	if on["c3"] == 0 || on["flood"] != 0 {
		t.Errorf("ICMP echo captured: %v; want some on c3 and none on the flooder", on)
	}
}

// synFlood sends n TCP SYNs from ns to dst:port, 1000 every 100 ms, from
// random sources in 10.200.0.0/16: off the lan's link, so the answers go
// to the lan's namespace, which has no route for them, and die there.
func synFlood(t *testing.T, ns string, dst string, port uint16, n int) {
	t.Helper()
	d4 := netip.MustParseAddr(dst).As4()
	inNS(t, ns, func() error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		sa := &syscall.SockaddrInet4{Addr: d4}
		pkt := make([]byte, 40)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range n {
			if i%1000 == 999 {
				time.Sleep(100 * time.Millisecond)
			}
			src := [4]byte{10, 200, byte(rng.IntN(256)), byte(rng.IntN(254) + 1)}
			// IPv4: the kernel fills in the checksum and total length.
			copy(pkt, []byte{0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, syscall.IPPROTO_TCP, 0, 0})
			copy(pkt[12:], src[:])
			copy(pkt[16:], d4[:])
			tcp := pkt[20:]
			clear(tcp)
			binary.BigEndian.PutUint16(tcp[0:], uint16(1024+rng.IntN(60000)))
			binary.BigEndian.PutUint16(tcp[2:], port)
			binary.BigEndian.PutUint32(tcp[4:], rng.Uint32())
			tcp[12] = 5 << 4
			tcp[13] = 0x02 // SYN
			binary.BigEndian.PutUint16(tcp[14:], 64240)
			binary.BigEndian.PutUint16(tcp[16:], checksum.Checksum(tcp, checksum.PseudoHeaderIPv4(src, d4, syscall.IPPROTO_TCP, 20)))
			if err := sendRetry(fd, pkt, sa); err != nil {
				return fmt.Errorf("SYN %d: %w", i, err)
			}
		}
		return nil
	})
}

// TestSYNFlood: 30000 SYNs from random sources at a published port (TAP
// uplink, --ct-max 8192) while a client fetches from it every 50 ms: every
// fetch is answered; the half-open entries expire early under pressure,
// and the daemon's anonymous memory comes back within memorySlackKB of its
// baseline after the flood (control_test.go says what stays).
func TestSYNFlood(t *testing.T) {
	requireRoot(t, "curl")
	d, lan := startNAT(t, "--ct-max", "8192", "--ct-tcp-pressure-timeout", "2s")
	web := newNS(t)
	d.attach(t, web, "web", "-p", "8080:80")
	serveTCP(t, web, ":80", func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		bufio.NewReader(c).ReadString('\n')
		c.Write([]byte("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"))
	})
	pid := d.cmd.Process.Pid
	fetch := func() error {
		out, err := exec.Command("ip", "netns", "exec", lan, "curl", "-sS", "--max-time", "5", "http://"+upIP+":8080/").CombinedOutput()
		if err != nil || string(out) != "ok\n" {
			return fmt.Errorf("curl: %v: %q", err, out)
		}
		return nil
	}
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	u0 := procUsage(t, pid)

	stop := make(chan struct{})
	type result struct{ ok, failed int }
	res := make(chan result, 1)
	go func() {
		var r result
		for {
			select {
			case <-stop:
				res <- r
				return
			default:
			}
			if err := fetch(); err != nil {
				r.failed++
				t.Log(err)
			} else {
				r.ok++
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	start := time.Now()
	synFlood(t, lan, upIP, 8080, 30000)
	took := time.Since(start)
	u1 := procUsage(t, pid)
	st := d.ctStats(t)
	close(stop)
	r := <-res
	t.Logf("flood of 30000 SYNs in %v; during it %d fetches answered, %d failed; conntrack %d entries, evicted %d; %v (baseline %v)",
		took.Round(time.Millisecond), r.ok, r.failed, st.Entries, st.Evicted, u1, u0)
	if r.failed > 0 || r.ok == 0 {
		t.Errorf("%d fetches failed during the flood (%d answered)", r.failed, r.ok)
	}
	// The entries expire and the tables are rebuilt at their new size,
	// their memory given back (daemon/nat.go).
	var u2 usage
	var left uint64
	deadline := time.Now().Add(15 * time.Second)
	for {
		u2 = procUsage(t, pid)
		left = d.ctStats(t).Entries
		if left < 100 && u2.anon <= u0.anon+memorySlackKB {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after the flood: %d conntrack entries, %v (baseline %v, during %v)", left, u2, u0, u1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after the flood: %d entries, %v", left, u2)
	if err := fetch(); err != nil {
		t.Errorf("after the flood: %v", err)
	}
}
