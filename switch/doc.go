// Package vswitch implements tapswitch's datapath: an Ethernet switch over
// a set of Ports whose forwarding decision is a pipeline of stages.
//
// Every port has one ingress goroutine. It reads a frame into a buffer taken
// from the switch's pool and runs it through the pipeline on that
// goroutine, so a frame is never queued and never copied between read and
// write. The default pipeline (ModeLearning, LearningStages) is
//
//	parse → port-security → vlan → learn → forward → acl → output
//
// parse builds the Frame (a parsed view, reused per port); port-security
// drops frames whose source MAC, IPv4 source or ARP sender is not the
// port's (PortConfig); vlan classifies the frame into a VLAN and strips
// its 802.1Q tag; learn puts the source into the FDB under fdb.Key{MAC,
// VLAN}; forward picks the learned port or floods the VLAN; acl applies the
// rules (SetRules) and isolation (Config.Isolate) per output port; output
// tags the frame for trunks and writes it to each port. ModeHub
// (HubStages) floods every frame to every other port after port security.
// Each stage is a small file (stage_*.go); a stage of one's own is any
// Stage, inserted with Config.Stages or SetPipeline. switch/README.md
// walks through it.
//
// Everything the hot path reads (ports, VLAN members, compiled rules,
// pipeline) is an immutable snapshot behind an atomic.Pointer, replaced
// whole by AddPort, RemovePort, SetRules and SetPipeline: a frame takes no
// lock of its own (the FDB takes its read lock, and its write lock only for
// a new or moved MAC), logs nothing and allocates nothing.
//
// A frame on the datapath is a virtio_net_hdr (VnetHdrLen bytes, as the
// kernel's TAP driver reads and writes it with IFF_VNET_HDR) followed by an
// Ethernet frame. Ports that have no such header (the gateway, test ports)
// write a zero header on Read and ignore it on Write.
//
// With offloads, the header may say that the frame is a GSO super-frame (up
// to 64 KiB of TCP or UDP to be cut into MTU-sized segments) or that its
// transport checksum is partial. Such a frame goes whole to a port that
// implements Offloader and accepts it (a TAP with the same offloads), and
// is segmented or has its checksum completed by package gso, into a pooled
// buffer of the ingress goroutine, for any other port (offload.go). Adding
// or removing a VLAN tag moves the header's csum_start and hdr_len with the
// headers. The one cost every frame pays is a look at two bytes of the
// header.
//
// A port that implements Answerer (the gateway) may answer a frame written
// to it at once; the switch forwards the answer on the writer's goroutine
// (answer.go), not the port's own.
//
// A port that implements NeighSuppressor (a VXLAN tunnel with suppression
// on) keeps address resolution off itself: the forward stage answers ARP
// requests and neighbour solicitations for the addresses the switch knows
// instead of flooding them (suppress.go).
package vswitch
