package vswitch

// Answerer is implemented by a Port that can answer some frames written to
// it at once: the gateway answering a DNS query from its cache. The switch
// then forwards the answer on the writer's goroutine, as if the port had
// returned it from Read, instead of waking the port's own ingress
// goroutine for it: one hand-off, wakeup and copy less a query.
type Answerer interface {
	// WriteAnswer is Write, except that the port may put one answer
	// frame (virtio_net_hdr included, as Read returns one) into
	// ans[ansOff:] and return its length as answer; 0 when it has none
	// at once (answers may still come later from Read). len(ans)-ansOff
	// is at least MaxFrame; ans is the caller's and must not be kept. It
	// is safe for concurrent use, as Write is.
	WriteAnswer(buf []byte, off int, ans []byte, ansOff int) (n, answer int, err error)
}

// answerState is where an ingress port's goroutine takes the answers of
// Answerer ports to the frames it writes to them: a buffer and the Frame
// the answer goes through the pipeline with.
type answerState struct {
	buf   *[BufSize]byte
	frame Frame
}

// answererOf returns p as an Answerer, or nil.
func answererOf(p Port) Answerer {
	a, _ := p.(Answerer)
	return a
}

// transmitAnswered writes the frame buf[off:] that came in on in to out,
// an Answerer, and forwards out's answer, if it has one at once, through
// the pipeline as a frame that came in on out. It runs on in's ingress
// goroutine, which owns in.ans. An answer's own frames are written with
// Write (Frame.answer): one level only.
func (s *Switch) transmitAnswered(in, out *port, buf []byte, off int) {
	a := in.ans
	if a == nil {
		// Once per ingress port, the first time it writes to an
		// Answerer.
		a = &answerState{buf: s.bufs.Get().(*[BufSize]byte)}
		a.frame.answer = true
		in.ans = a
	}
	n, an, err := out.answerer.WriteAnswer(buf, off, a.buf[:], Headroom)
	if err != nil {
		out.stats.txDropped.Add(1)
		return
	}
	out.stats.txPackets.Add(1)
	out.stats.txBytes.Add(uint64(n - VnetHdrLen))
	if an > 0 && an <= MaxFrame {
		s.forwardFrame(&a.frame, out, a.buf[:], Headroom, an)
	}
}

// putAns returns the port's answer buffer, if it took one, to pool.
func (pt *port) putAns(pool interface{ Put(any) }) {
	if pt.ans != nil {
		pool.Put(pt.ans.buf)
		pt.ans = nil
	}
}
