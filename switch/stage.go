package vswitch

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/tapswitch/tapswitch/fdb"
)

// Stage is one step of the switch's pipeline. Process looks at the frame
// (and may narrow where it goes) and says whether it goes on to the next
// stage. It is called on the ingress goroutine of the frame's port, by
// several goroutines at once for different frames: a Stage with state must
// make it safe for concurrent use (per-port state is best kept in arrays
// indexed by f.InPort(), or in atomics). Process must not allocate, block
// or log: it runs for every frame. See Frame for what a stage may modify.
type Stage interface {
	Process(f *Frame) Verdict
}

// StageFunc adapts a function to a Stage.
type StageFunc func(f *Frame) Verdict

// Process calls fn(f).
func (fn StageFunc) Process(f *Frame) Verdict { return fn(f) }

// Verdict is what a Stage decides about a frame: go on, or drop it and
// count the drop in the stage's counters and, for the Drop* verdicts other
// than Drop, in one of the ingress port's counters.
type Verdict uint8

const (
	// Continue passes the frame to the next stage.
	Continue Verdict = iota
	// Drop drops the frame; only the stage's Drops counts it.
	Drop
	// DropError drops a malformed frame (counted in RxErrors).
	DropError
	// DropFiltered drops a frame whose destination is behind the port it
	// came in on (RxFiltered).
	DropFiltered
	// DropSpoofed drops a port security violation (RxSpoofed).
	DropSpoofed
	// DropVLAN drops a frame with a VLAN tag the port may not send
	// (RxVLANErrors).
	DropVLAN
	// DropDenied drops a frame an ACL rule or isolation denied (RxDenied).
	DropDenied
)

// count bumps the ingress port's counter for v.
func (v Verdict) count(c *counters) {
	switch v {
	case DropError:
		c.rxErrors.Add(1)
	case DropFiltered:
		c.rxFiltered.Add(1)
	case DropSpoofed:
		c.rxSpoofed.Add(1)
	case DropVLAN:
		c.rxVLANErrors.Add(1)
	case DropDenied:
		c.rxDenied.Add(1)
	}
}

// PipelineStage is a Stage with the name and one-line description that
// `tapswitch pipeline` prints.
type PipelineStage struct {
	Name  string
	Doc   string
	Stage Stage
}

// The built-in stages, each in its own file (stage_*.go). They read and
// write the switch's state through the Frame.
var (
	stageParse  = PipelineStage{"parse", "read MACs, VLAN tags, IPv4/ARP/TCP/UDP headers; drop runts and multicast or zero sources (rx_errors)", parseStage{}}
	stageSecure = PipelineStage{"port-security", "source MAC, IPv4 source and ARP sender must be the port's (rx_spoofed)", securityStage{}}
	stageVLAN   = PipelineStage{"vlan", "classify into the access/native VLAN or the trunk's tag and strip it; bad tags dropped (rx_vlan_errors)", vlanStage{}}
	stageLearn  = PipelineStage{"learn", "learn the source MAC in the frame's VLAN", learnStage{}}
	stageFwd    = PipelineStage{"forward", "known unicast to its port (same port: rx_filtered), else flood the VLAN; ARP/ND for a known address answered when a port suppresses (vxlan suppress=on)", forwardStage{}}
	stageACL    = PipelineStage{"acl", "rules in ID order and isolation (icc=false) per output port (rx_denied); count and mirror", aclStage{}}
	stageHub    = PipelineStage{"hub", "every other port, as vde_switch -x", hubStage{}}
	stageOutput = PipelineStage{"output", "per output port: tag or untag for its VLAN, segment or complete checksums if it lacks offloads, write", outputStage{}}
)

// LearningStages returns the default pipeline of ModeLearning: parse,
// port-security, vlan, learn, forward, acl, output. The caller owns the
// slice: insert a stage of its own and give it to Config.Stages or
// SetPipeline.
func LearningStages() []PipelineStage {
	return []PipelineStage{stageParse, stageSecure, stageVLAN, stageLearn, stageFwd, stageACL, stageOutput}
}

// HubStages returns the pipeline of ModeHub: parse, port-security, hub,
// output. Frames keep their tags; nothing is learned.
func HubStages() []PipelineStage {
	return []PipelineStage{stageParse, stageSecure, stageHub, stageOutput}
}

// ErrInvalidPipeline is returned (wrapped) by SetPipeline and New for a
// pipeline that cannot work.
var ErrInvalidPipeline = errors.New("invalid pipeline")

// pipeline is an immutable list of stages with their counters. A frame
// that enters it either goes through every stage or is dropped by one, so
// the hits of stage i are the frames that entered less the drops of the
// stages before it: the datapath pays one counter per frame, not one per
// stage.
type pipeline struct {
	stages  []PipelineStage
	kinds   []stageKind // kinds[i] says which built-in stages[i] is, if any
	entered shardedCounter
	drops   []shardedCounter
}

// stageKind names the built-in stages, so that the datapath calls them
// directly (and the compiler can inline them) instead of through the
// Stage interface: seven indirect calls were about 15% of a frame.
type stageKind uint8

const (
	kindOther stageKind = iota
	kindParse
	kindSecure
	kindVLAN
	kindLearn
	kindForward
	kindACL
	kindHub
	kindOutput
)

func kindOf(st Stage) stageKind {
	switch st.(type) {
	case parseStage:
		return kindParse
	case securityStage:
		return kindSecure
	case vlanStage:
		return kindVLAN
	case learnStage:
		return kindLearn
	case forwardStage:
		return kindForward
	case aclStage:
		return kindACL
	case hubStage:
		return kindHub
	case outputStage:
		return kindOutput
	}
	return kindOther
}

// run runs stage i of p on f.
func (p *pipeline) run(i int, f *Frame) Verdict {
	switch p.kinds[i] {
	case kindParse:
		return parseStage{}.Process(f)
	case kindSecure:
		return securityStage{}.Process(f)
	case kindVLAN:
		return vlanStage{}.Process(f)
	case kindLearn:
		return learnStage{}.Process(f)
	case kindForward:
		return forwardStage{}.Process(f)
	case kindACL:
		return aclStage{}.Process(f)
	case kindHub:
		return hubStage{}.Process(f)
	case kindOutput:
		return outputStage{}.Process(f)
	}
	return p.stages[i].Stage.Process(f)
}

func newPipeline(stages []PipelineStage) (*pipeline, error) {
	if len(stages) == 0 {
		return nil, fmt.Errorf("%w: no stages", ErrInvalidPipeline)
	}
	for i, st := range stages {
		if st.Name == "" || st.Stage == nil {
			return nil, fmt.Errorf("%w: stage %d has no name or no Stage", ErrInvalidPipeline, i)
		}
	}
	p := &pipeline{stages: append([]PipelineStage(nil), stages...), kinds: make([]stageKind, len(stages)), drops: make([]shardedCounter, len(stages))}
	for i, st := range stages {
		p.kinds[i] = kindOf(st.Stage)
	}
	return p, nil
}

// SetPipeline replaces the pipeline with stages, in one atomic swap: a
// frame goes through the old pipeline or the new one. The stages' counters
// start from zero. Frames reach ports only through an output stage, which
// is normally the last one; the one exception is the forward stage's
// answer to an ARP request or NS under suppression (suppress.go), written
// back to the ingress port.
func (s *Switch) SetPipeline(stages []PipelineStage) error {
	p, err := newPipeline(stages)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pipe = p
	s.publishLocked()
	return nil
}

// Pipeline lists the stages of the pipeline in use, in order, with their
// counters.
func (s *Switch) Pipeline() []StageStats {
	p := s.ports.Load().pipe
	out := make([]StageStats, len(p.stages))
	// Drops first: every drop was preceded by its frame's entry, so the
	// hits read below are never below the drops.
	var dropped uint64
	for i := range p.stages {
		out[i].Drops = p.drops[i].sum()
	}
	entered := p.entered.sum()
	for i, st := range p.stages {
		out[i].Name, out[i].Doc = st.Name, st.Doc
		out[i].Hits = entered - dropped
		dropped += out[i].Drops
	}
	return out
}

// shardedCounter is a counter written by many ingress goroutines: each
// port adds to the shard of its ID, on its own cache line, and readers sum
// the shards.
type shardedCounter struct {
	shard [counterShards]struct {
		n atomic.Uint64
		_ [cacheLine - 8]byte
	}
}

func (c *shardedCounter) add(in fdb.PortID) { c.shard[in&(counterShards-1)].n.Add(1) }

func (c *shardedCounter) sum() uint64 {
	var n uint64
	for i := range c.shard {
		n += c.shard[i].n.Load()
	}
	return n
}

// StageStats describes one stage of the switch's pipeline with its
// counters, for `tapswitch pipeline`.
type StageStats struct {
	Name string `json:"name"`
	Doc  string `json:"doc"`
	// Hits counts the frames the stage saw, Drops those it dropped.
	Hits  uint64 `json:"hits"`
	Drops uint64 `json:"drops"`
}
