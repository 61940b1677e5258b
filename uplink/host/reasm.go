package host

import (
	"sync"
	"time"

	"github.com/tapswitch/tapswitch/wire"
)

// Limits of the reassembly of UDP and ICMP datagrams that containers send
// fragmented (TCP's are reassembled by the netstack).
const (
	// reasmMax is how many datagrams may be in reassembly at once.
	reasmMax = 64
	// reasmTimeout is how long a datagram's fragments wait for the rest
	// (Linux's ipfrag_time).
	reasmTimeout = 30 * time.Second
)

// fragKey identifies the fragments of one datagram (RFC 791: source,
// destination, protocol and identification).
type fragKey struct {
	src, dst [4]byte
	id       uint16
	proto    uint8
}

// partial is a datagram in reassembly.
type partial struct {
	hdr   [ipHdrLen]byte // the first fragment's header, options dropped
	first bool           // the first fragment (offset 0) came
	data  []byte         // the payload so far, at its offsets
	total int            // the payload's length, once the last fragment came; else -1
	seen  [8192 / 64]uint64
	got   int // distinct 8-byte blocks received
	since time.Time
}

// reassembly holds the datagrams in reassembly.
type reassembly struct {
	mu sync.Mutex // guards m
	m  map[fragKey]*partial
}

// add takes the fragment pkt (header length hl) and returns the whole
// datagram, header first, when it is complete; ok is false while it is
// not, or when the fragment was dropped (dropped true: over the limits or
// malformed).
func (r *reassembly) add(pkt []byte, hl int, now time.Time) (whole []byte, dropped bool) {
	ip := wire.IPv4(pkt)
	off := int(ip.FragOff()) * 8
	more := ip.MoreFragments()
	payload := pkt[hl:]
	end := off + len(payload)
	if end > maxPacket-ipHdrLen || (more && len(payload)%8 != 0) || len(payload) == 0 {
		return nil, true
	}
	k := fragKey{src: ip.Src(), dst: ip.Dst(), id: ip.ID(), proto: ip.Protocol()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[fragKey]*partial{}
	}
	p := r.m[k]
	if p == nil {
		if len(r.m) >= reasmMax {
			return nil, true
		}
		p = &partial{total: -1, since: now, data: make([]byte, 0, 2048)}
		r.m[k] = p
	}
	if !more {
		if p.total >= 0 && p.total != end || end < p.maxEnd() {
			delete(r.m, k)
			return nil, true
		}
		p.total = end
	} else if p.total >= 0 && end > p.total {
		delete(r.m, k)
		return nil, true
	}
	if len(p.data) < end {
		p.data = append(p.data, make([]byte, end-len(p.data))...)
	}
	copy(p.data[off:end], payload)
	for b := off / 8; b < (end+7)/8; b++ {
		if p.seen[b/64]&(1<<(b%64)) == 0 {
			p.seen[b/64] |= 1 << (b % 64)
			p.got++
		}
	}
	if off == 0 {
		p.first = true
		copy(p.hdr[:], pkt[:ipHdrLen])
	}
	if !p.first || p.total < 0 || p.got != (p.total+7)/8 {
		return nil, false
	}
	delete(r.m, k)
	whole = make([]byte, ipHdrLen+p.total)
	copy(whole, p.hdr[:])
	w := wire.IPv4(whole)
	whole[0] = 0x45 // version 4, IHL 5: the options were not kept
	w.SetTotalLen(len(whole))
	w.SetFlagsFrag(0)
	copy(whole[ipHdrLen:], p.data[:p.total])
	return whole, false
}

// maxEnd is the end of the furthest byte received.
func (p *partial) maxEnd() int { return len(p.data) }

// expire forgets the datagrams whose fragments waited longer than
// reasmTimeout and returns how many.
func (r *reassembly) expire(now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, p := range r.m {
		if now.Sub(p.since) > reasmTimeout {
			delete(r.m, k)
			n++
		}
	}
	return n
}
