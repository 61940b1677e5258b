package vswitch

// outputStage writes the frame to each of its output ports, in port
// order. A port whose VLAN (access or native) is the frame's gets it
// untagged; a trunk carrying the frame's VLAN gets it with an 802.1Q tag
// inserted in the Headroom for the Write and removed after it, so the next
// port sees the frame as before. In hub mode (Frame.VLAN 0) frames go as
// they came. A port lacking an offload the frame needs gets it segmented
// or with its checksum completed (offload.go). A failed Write is counted
// in that port's TxDropped and does not stop the others.
type outputStage struct{}

func (outputStage) Process(f *Frame) Verdict {
	for i := f.out.next(0); i >= 0; i = f.out.next(i + 1) {
		f.sw.egress(f, f.t.list[i])
	}
	return Continue
}

// egress sends the frame to out, tagged if out carries the frame's VLAN
// tagged.
func (s *Switch) egress(f *Frame, out *port) {
	if f.VLAN == 0 || f.VLAN == out.cfg.VLAN {
		s.send(f, out, f.buf, f.off, f.need)
		return
	}
	if f.off < 4 {
		// No room for a tag: only a caller outside the ingress loop
		// (which reads at Headroom) could do this.
		out.stats.txDropped.Add(1)
		return
	}
	o := f.insertTag(f.VLAN)
	s.send(f, out, f.buf, o, f.need)
	f.restoreTag()
}
