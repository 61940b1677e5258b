package nat

import (
	"encoding/binary"
	"net/netip"
)

// mappingLocked returns the mapping of an internal endpoint, creating it
// (port preservation first, then the range) when there is none.
func (t *Table) mappingLocked(proto Proto, in Endpoint) (*mapping, DropReason) {
	if m := t.maps[mapKey{proto, in}]; m != nil {
		return m, DropNone
	}
	port, ok := t.pickPortLocked(proto, in)
	if !ok {
		return nil, DropNoPort
	}
	m := &mapping{proto: proto, internal: in, port: port}
	t.maps[mapKey{proto, in}] = m
	t.ports[m.portKey()] = m
	t.nmaps.Add(1)
	return m, DropNone
}

// releaseIfUnusedLocked removes m when no connection holds it.
func (t *Table) releaseIfUnusedLocked(m *mapping) {
	if m == nil || m.refs > 0 {
		return
	}
	if t.maps[mapKey{m.proto, m.internal}] == m {
		delete(t.maps, mapKey{m.proto, m.internal})
		delete(t.ports, m.portKey())
		t.nmaps.Add(-1)
	}
}

// portKey returns the key of m's external port.
func (m *mapping) portKey() portKey { return portKey{m.proto, m.internal.Addr.Is6(), m.port} }

func (t *Table) portFreeLocked(proto Proto, v6 bool, port uint16) bool {
	if port == 0 || t.ports[portKey{proto, v6, port}] != nil {
		return false
	}
	return isICMP(proto) || t.publishForLocked(proto, v6, port) == nil
}

// addrHash mixes the words of a into a start for scanLocked.
func addrHash(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return binary.BigEndian.Uint32(b[:])
	}
	b := a.As16()
	var h uint32
	for i := 0; i < 16; i += 4 {
		h = h*16777619 ^ binary.BigEndian.Uint32(b[i:])
	}
	return h
}

// pickPortLocked chooses the external port of a new mapping: the internal
// port if free (port preservation), else a free one in the range after a
// start derived from the endpoint, staying below 1024 for a source below
// 1024 when the range reaches there, and at or above 1024 otherwise (RFC
// 4787 REQ-3), and of the source port's parity when one is free (REQ-4).
func (t *Table) pickPortLocked(proto Proto, in Endpoint) (uint16, bool) {
	v6 := in.Addr.Is6()
	if t.portFreeLocked(proto, v6, in.Port) {
		return in.Port, true
	}
	lo, hi := max(t.cfg.PortMin, 1), t.cfg.PortMax
	h := uint32(in.Port)*2654435761 ^ addrHash(in.Addr)*40503
	var ranges [3][2]uint16
	n := 0
	if in.Port < 1024 {
		if lo < 1024 {
			ranges[n] = [2]uint16{lo, min(hi, 1023)}
			n++
		}
	} else if hi >= 1024 {
		ranges[n] = [2]uint16{max(lo, 1024), hi}
		n++
	}
	ranges[n] = [2]uint16{lo, hi}
	n++
	for _, r := range ranges[:n] {
		for _, parity := range []bool{true, false} {
			if p, ok := t.scanLocked(proto, v6, r[0], r[1], h, parity, in.Port&1); ok {
				return p, true
			}
		}
	}
	return 0, false
}

// scanLocked returns the first free port of [lo, hi] after a start derived
// from h; with sameParity only ports whose low bit is bit.
func (t *Table) scanLocked(proto Proto, v6 bool, lo, hi uint16, h uint32, sameParity bool, bit uint16) (uint16, bool) {
	if lo > hi {
		return 0, false
	}
	n := uint32(hi-lo) + 1
	start := h % n
	for i := range n {
		p := lo + uint16((start+i)%n)
		if sameParity && p&1 != bit {
			continue
		}
		if t.portFreeLocked(proto, v6, p) {
			return p, true
		}
	}
	return 0, false
}
