package vswitch

// parseStage fills the Frame's parsed fields and drops what no station
// sends: a frame too short for an Ethernet header, or one from a group or
// the zero address (br_handle_frame drops those too). Counted in
// RxErrors.
type parseStage struct{}

func (parseStage) Process(f *Frame) Verdict {
	if !f.parse() || f.Src.IsMulticast() || f.Src.IsZero() {
		return DropError
	}
	return Continue
}
