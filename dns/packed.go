package dns

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// The packed answer cache keeps UDP answers as they were sent, in wire
// format, keyed by everything in the query that decides them, so that a
// question asked again is answered by copying bytes and patching a few:
// the ID, the question name as this client spells it, and the TTLs of a
// forwarded answer lowered by its age in the cache. No miekg/dns Unpack or
// Pack runs and nothing is allocated on a hit; miekg stays the codec of
// everything else, and every entry is an answer the slow path built.
//
// An entry is valid for the zone it was built from (a generation number
// that SetHosts changes: local answers follow attach and detach at once)
// and, for a forwarded answer, until its entry in the message cache
// (cache.go) expires.

// maxKeyLen bounds a key: the header flags, type, class, the EDNS0 OPT's
// presence, UDP size and TTL field (extended rcode, version, DO), the
// client, and a name of at most 255 bytes.
const maxKeyLen = 2 + 2 + 2 + 1 + 2 + 4 + 4 + 255

// query is what the packed cache reads of a query in wire format
// (parseQuery).
type query struct {
	nameEnd int // the question name is msg[headerSize:nameEnd]
	qtype   uint16
	key     [maxKeyLen]byte
	keyLen  int
}

// headerSize is the size of a DNS message header (RFC 1035 4.1.1).
const headerSize = 12

// EDNS0 option codes a query may carry and still be answered from the
// packed cache: miekg/dns unpacks them without checks, so the slow path
// answers such a query as it answers one without them.
const (
	optNSID    = 3
	optCookie  = 10
	optPadding = 12
)

// parseQuery reads msg as a standard query with one question and nothing
// else but an EDNS0 OPT, and fills q, the key's client part excepted
// (setClient). It reports false for anything else, left to the slow path:
// a response, another opcode, compression in the question name, other
// records or options, trailing bytes.
func parseQuery(msg []byte, q *query) bool {
	if len(msg) < headerSize+1+4 || msg[2]&0x80 != 0 || (msg[2]>>3)&0xf != dns.OpcodeQuery {
		return false
	}
	be := binary.BigEndian
	if be.Uint16(msg[4:]) != 1 || be.Uint16(msg[6:]) != 0 || be.Uint16(msg[8:]) != 0 || be.Uint16(msg[10:]) > 1 {
		return false
	}
	off := headerSize
	for {
		if off >= len(msg) {
			return false
		}
		l := int(msg[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(msg) {
			return false
		}
		off += 1 + l
	}
	if off-headerSize > 255 || off+4 > len(msg) {
		return false
	}
	q.nameEnd = off
	q.qtype = be.Uint16(msg[off:])
	k := q.key[:0]
	k = append(k, msg[2], msg[3])
	k = append(k, msg[off:off+4]...) // type and class
	off += 4
	if be.Uint16(msg[10:]) == 0 {
		if off != len(msg) {
			return false
		}
		k = append(k, 0, 0, 0, 0, 0, 0, 0)
	} else {
		// The OPT RR (RFC 6891 6.1.2): root name, type, UDP size,
		// extended rcode, version and flags, options.
		if off+11 > len(msg) || msg[off] != 0 || be.Uint16(msg[off+1:]) != dns.TypeOPT ||
			off+11+int(be.Uint16(msg[off+9:])) != len(msg) || !plainOptions(msg[off+11:]) {
			return false
		}
		k = append(k, 1)
		k = append(k, msg[off+3:off+9]...)
	}
	k = append(k, 0, 0, 0, 0) // the client, setClient's
	q.keyLen = len(k) + q.nameEnd - headerSize
	for i, c := range msg[headerSize:q.nameEnd] {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		q.key[len(k)+i] = c
	}
	return true
}

// plainOptions reports whether the options of an OPT record are
// well-formed and all NSID, cookies or padding.
func plainOptions(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 4 {
			return false
		}
		code, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if len(b) < 4+n || code != optNSID && code != optCookie && code != optPadding {
			return false
		}
		b = b[4+n:]
	}
	return true
}

// setClient puts the client's index in the zone into the key: local
// answers depend on who asks (VLANs, isolation).
func (q *query) setClient(c int) {
	off := q.keyLen - (q.nameEnd - headerSize) - 4
	binary.BigEndian.PutUint32(q.key[off:], uint32(int32(c)))
}

// packedEntry is one cached answer.
type packedEntry struct {
	msg   []byte   // the answer to the query that built it
	names []uint16 // offsets of the question name and, in a local answer, of owner names that copy it
	ttls  []uint16 // offsets of TTL fields (forwarded answers only)
	gen   uint64   // the zone's generation

	// A forwarded answer's message cache entry: stored, expires, and
	// its age in whole seconds when msg was built.
	stored, expires time.Time
	age0            int64

	rcode     int
	local     bool // answered from the local names, not the cache
	truncated bool
}

// packedCache maps keys to entries, at most max of them (0 keeps none).
// Lookups take the read lock only.
type packedCache struct {
	max int

	mu      sync.RWMutex // guards entries
	entries map[string]*packedEntry
}

func newPackedCache(max int) *packedCache {
	return &packedCache{max: max, entries: make(map[string]*packedEntry)}
}

// answer writes the cached answer to the query msg (parsed into q) into
// dst and returns its length and entry, or 0 and nil when there is none
// valid for the zone generation gen at now, or it does not fit.
func (c *packedCache) answer(msg []byte, q *query, gen uint64, now time.Time, dst []byte) (int, *packedEntry) {
	c.mu.RLock()
	e := c.entries[string(q.key[:q.keyLen])]
	c.mu.RUnlock()
	if e == nil || e.gen != gen || !e.expires.IsZero() && !now.Before(e.expires) || len(e.msg) > len(dst) {
		return 0, nil
	}
	n := copy(dst, e.msg)
	dst[0], dst[1] = msg[0], msg[1]
	name := msg[headerSize:q.nameEnd]
	for _, off := range e.names {
		copy(dst[off:], name)
	}
	if d := int64(now.Sub(e.stored)/time.Second) - e.age0; d > 0 && len(e.ttls) > 0 {
		for _, off := range e.ttls {
			ttl := int64(binary.BigEndian.Uint32(dst[off:]))
			binary.BigEndian.PutUint32(dst[off:], uint32(max(ttl-d, 0)))
		}
	}
	return n, e
}

// put keeps out, the answer to the query msg (parsed into q), as e says:
// e's rcode, kind and times, with msg, names and ttls filled here. An
// answer whose records cannot be walked is not kept.
func (c *packedCache) put(msg []byte, q *query, out []byte, e *packedEntry) {
	if c.max <= 0 {
		return
	}
	names, ttls, ok := layout(out, msg[headerSize:q.nameEnd])
	if !ok {
		return
	}
	e.msg = append([]byte(nil), out...)
	if e.local {
		// Local records are named as the question (apexSOA).
		e.names = names
	} else {
		// Forwarded ones as the upstream named them, once.
		e.names, e.ttls = names[:1], ttls
	}
	key := string(q.key[:q.keyLen])
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		for k := range c.entries { // map order is random
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = e
}

// clear empties the cache (the zone changed: its entries are stale).
func (c *packedCache) clear() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// len returns the number of entries.
func (c *packedCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// layout walks the answer msg and returns the offsets of the owner names
// that are qname exactly (uncompressed; the question's first) and of the
// TTL fields of its records, OPT excepted. It reports false when msg is
// not one question followed by well-formed records, or is too long for
// 16-bit offsets.
func layout(msg, qname []byte) (names, ttls []uint16, ok bool) {
	be := binary.BigEndian
	if len(msg) < headerSize || len(msg) > 0xffff || be.Uint16(msg[4:]) != 1 || !hasPrefix(msg[headerSize:], qname) {
		return nil, nil, false
	}
	names = []uint16{headerSize}
	off := headerSize + len(qname) + 4
	n := int(be.Uint16(msg[6:])) + int(be.Uint16(msg[8:])) + int(be.Uint16(msg[10:]))
	for range n {
		if off < len(msg) && hasPrefix(msg[off:], qname) {
			names = append(names, uint16(off))
		}
		off = skipName(msg, off)
		if off < 0 || off+10 > len(msg) {
			return nil, nil, false
		}
		if be.Uint16(msg[off:]) != dns.TypeOPT {
			ttls = append(ttls, uint16(off+4))
		}
		off += 10 + int(be.Uint16(msg[off+8:]))
	}
	return names, ttls, off == len(msg)
}

func hasPrefix(b, p []byte) bool { return len(b) >= len(p) && string(b[:len(p)]) == string(p) }

// skipName returns the offset after the name at off in msg, or -1.
func skipName(msg []byte, off int) int {
	for off < len(msg) {
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1
		case l&0xc0 == 0xc0:
			if off+2 > len(msg) {
				return -1
			}
			return off + 2
		case l > 63:
			return -1
		}
		off += 1 + l
	}
	return -1
}
