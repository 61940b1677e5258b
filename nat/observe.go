package nat

import (
	"time"
)

// timeout left at now: what `tapswitch conntrack` lists.
func (t *Table) Entries(now int64) []Entry {
	pressure := t.underPressure(now)
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Entry, 0, t.nconns)
	for _, l := range []*connList{&t.cand, &t.kept, &t.closing} {
		for c := l.head; c != nil; c = c.next {
			f := c.flags.Load()
			out = append(out, Entry{
				Proto:        c.orig.Proto,
				State:        stateName(c.orig.Proto, f),
				Orig:         c.orig,
				Reply:        c.reply,
				Timeout:      time.Duration(c.lastSeen.Load() + int64(t.timeoutOf(c, f, pressure)) - now),
				Age:          time.Duration(now - c.created),
				OrigPackets:  c.packets[dirOrig].Load(),
				OrigBytes:    c.bytes[dirOrig].Load(),
				ReplyPackets: c.packets[dirReply].Load(),
				ReplyBytes:   c.bytes[dirReply].Load(),
				Replied:      f&fReplied != 0,
			})
		}
	}
	return out
}

func stateName(p Proto, f uint32) string {
	if p != TCP {
		if f&fReplied != 0 {
			return "REPLIED"
		}
		return "UNREPLIED"
	}
	switch {
	case f&fRst != 0:
		return "CLOSE"
	case f&fFinOrig != 0 && f&fFinReply != 0:
		return "TIME_WAIT"
	case f&fFinOrig != 0:
		return "FIN_WAIT"
	case f&fFinReply != 0:
		return "CLOSE_WAIT"
	case f&fEstablished != 0:
		return "ESTABLISHED"
	case f&fSynReply != 0:
		return "SYN_RECV"
	}
	return "SYN_SENT"
}

// Len returns the number of connections.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.nconns
}

// Stats returns the counters.
func (t *Table) Stats() Stats {
	s := Stats{
		Mappings:      uint64(t.nmaps.Load()),
		Created:       t.created.Load(),
		Expired:       t.nexpired.Load(),
		Evicted:       t.evicted.Load(),
		Refused:       t.refused.Load(),
		Flushed:       t.flushed.Load(),
		TranslatedOut: t.outPkts.Load(),
		TranslatedIn:  t.inPkts.Load(),
		ICMPErrors:    t.icmpErrs.Load(),
		Fragments:     t.fragsTranslated.Load(),
	}
	for i := range s.Entries {
		s.Entries[i] = uint64(t.entries[i].Load())
	}
	for i := range s.Drops {
		s.Drops[i] = t.drops[i].Load()
	}
	return s
}
