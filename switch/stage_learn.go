package vswitch

import "github.com/tapswitch/tapswitch/fdb"

// learnStage learns the frame's source MAC in its VLAN
// (fdb.Key{MAC, VLAN}) on the ingress port. The FDB takes its write lock
// only for a new or moved MAC, not for a refresh.
type learnStage struct{}

func (learnStage) Process(f *Frame) Verdict {
	f.sw.fdb.Learn(fdb.Key{MAC: f.Src, VLAN: f.VLAN}, f.in.id, f.now)
	return Continue
}
