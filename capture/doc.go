// Package capture implements packet capture for tapswitch: capture points
// that the datapath feeds, capture sessions that copy the frames they want
// into a bounded set of preallocated records, a tcpdump-style filter
// compiled to classic BPF (run with golang.org/x/net/bpf), and pcapng and
// pcap writers (github.com/gopacket/gopacket/pcapgo).
//
// A [Point] is a place frames pass: each port of the switch has one, and so
// can anything else that carries frames or packets (an uplink, the two sides
// of NAT). Code on the datapath calls [Point.Deliver] for every frame; with
// no session attached that is one atomic load. A [Session] attached to one or
// more points receives copies of the frames that pass its filter. It never
// blocks the datapath: when its reader is slower than the traffic and its
// records are all in use, frames are dropped from the capture and counted,
// per point, in the session and in the point.
package capture
