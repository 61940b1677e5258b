package host

import (
	"encoding/binary"
	"errors"
	"net"
	"os"

	"golang.org/x/net/icmp"

	"github.com/tapswitch/tapswitch/internal/checksum"
)

const (
	icmpEchoReply   = 0
	icmpEchoRequest = 8
)

// sendICMP sends the ICMP echo request pkt (header length hl) from the
// unprivileged ICMP socket of its mapped identifier. The kernel puts the
// socket's own identifier in and computes the checksum.
func (u *Uplink) sendICMP(pkt []byte, hl int) error {
	m := pkt[hl:]
	if len(m) < 8 || m[0] != icmpEchoRequest || m[1] != 0 {
		u.stats.otherDropped.Add(1)
		return nil
	}
	addr, ok := u.target([4]byte(pkt[16:20]))
	if !ok {
		return nil
	}
	id := binary.BigEndian.Uint16(m[4:6])
	f := u.icmp.get(id)
	if f == nil {
		if f = u.newICMPFlow(id); f == nil {
			return nil
		}
	}
	f.touch()
	if _, err := f.conn.(*icmp.PacketConn).WriteTo(m, &net.UDPAddr{IP: addr.AsSlice()}); err != nil {
		u.stats.icmpDropped.Add(1)
	}
	return nil
}

// newICMPFlow opens the ICMP socket of identifier id and starts its reader;
// nil when the kernel refuses (counted, warned about once) or past
// MaxICMP.
func (u *Uplink) newICMPFlow(id uint16) *flow {
	c, err := icmp.ListenPacket("udp4", "0.0.0.0")
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			u.stats.icmpDenied.Add(1)
			u.pingWarn.Do(func() {
				u.log.Warn("host uplink: ping from containers is off: this user may not open ICMP echo sockets; allow its group in sysctl net.ipv4.ping_group_range (e.g. \"0 2147483647\")", "err", err)
			})
			return nil
		}
		u.stats.icmpDropped.Add(1)
		u.stats.errors.Add(1)
		return nil
	}
	f := &flow{key: id, conn: c}
	got := u.startFlow(&u.icmp, f, u.cfg.MaxICMP, &u.stats.icmpSockets, &u.stats.icmpTotal, func() { u.readICMP(f, c) })
	if got == nil {
		u.stats.icmpDropped.Add(1)
	}
	return got
}

// readICMP hands the echo replies the socket of f receives back to the
// mapping, with the mapped identifier put back, until the socket is closed.
func (u *Uplink) readICMP(f *flow, c *icmp.PacketConn) {
	defer u.wg.Done()
	defer u.stats.icmpSockets.Add(^uint64(0))
	defer u.icmp.remove(f)
	defer c.Close()
	bp := u.getBuf()
	defer u.putBuf(bp)
	b := *bp
	for {
		n, from, err := c.ReadFrom(b[ipHdrLen : maxPacket-ipHdrLen])
		if err != nil {
			return
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok || n < 8 || b[ipHdrLen] != icmpEchoReply {
			continue
		}
		ip4 := ua.IP.To4()
		if ip4 == nil {
			continue
		}
		f.touch()
		src := [4]byte(ip4)
		if src[0] == 127 {
			src = u.loopback
		}
		m := b[ipHdrLen : ipHdrLen+n]
		binary.BigEndian.PutUint16(m[4:6], f.key)
		m[2], m[3] = 0, 0
		binary.BigEndian.PutUint16(m[2:4], checksum.Checksum(m, 0))
		id := uint16(ipID.Add(1))
		if ipHdrLen+n <= u.cfg.MTU {
			putIPv4(b, ipHdrLen+n, protoICMP, src, u.addr, id, 0)
			u.deliver(b[:ipHdrLen+n])
			continue
		}
		u.fragment(m, protoICMP, src, u.addr, id)
	}
}
