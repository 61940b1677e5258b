package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/capture"
)

func cmdCapture(args []string, stdout io.Writer) error {
	fs := newFlags("capture")
	var req api.CaptureRequest
	file := fs.String("w", "", "write the capture to `FILE`; - for standard output")
	fs.BoolVar(&req.All, "all", false, "capture every port, one pcapng interface each")
	fs.IntVar(&req.Count, "c", 0, "stop after `N` packets")
	fs.DurationVar(&req.Duration, "duration", 0, "stop after this long")
	fs.StringVar(&req.Format, "format", "pcapng", "pcapng or pcap")
	fs.IntVar(&req.Snaplen, "s", 0, "keep at most `N` bytes of each frame (default 262144)")
	control := controlFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *file == "" {
		return usagef("give -w FILE, or -w - to write to standard output")
	}
	if !req.All {
		if len(pos) == 0 {
			return usagef("give a port name (or gateway), or --all")
		}
		// Several ports may be given as c1,c2.
		req.Ports = strings.Split(pos[0], ",")
		pos = pos[1:]
	}
	req.Filter = strings.Join(pos, " ")
	if _, err := capture.ParseFormat(req.Format); err != nil {
		return usagef("--%v", err)
	}
	if req.Count < 0 || req.Duration < 0 || req.Snaplen < 0 {
		return usagef("-c, --duration and -s must not be negative")
	}
	// A filter is checked here too, so that a mistake is a usage error
	// with the words of the parser; the daemon checks it again.
	if _, err := capture.ParseFilter(req.Filter); err != nil {
		return usagef("%v", err)
	}

	// Signals: the first Ctrl-C stops the capture cleanly (the daemon ends
	// the stream with its statistics); a second one cuts it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// A reader that went away (tshark quit) is a write error, not SIGPIPE.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	cl := client(*control)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := cl.Capture(ctx, req)
	if err != nil {
		return err
	}
	defer stream.Close()

	var out io.Writer = stdout
	var f *os.File
	if *file != "-" {
		if f, err = os.Create(*file); err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	what := "all ports"
	if !req.All {
		what = strings.Join(req.Ports, ", ")
	}
	filter := ""
	if req.Filter != "" {
		filter = fmt.Sprintf(" (filter %q)", req.Filter)
	}
	fmt.Fprintf(os.Stderr, "capturing on %s%s, %s; Ctrl-C to stop\n", what, filter, req.Format)

	stop := func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if cl.StopCapture(sctx, stream.ID) != nil {
			stream.Close()
		}
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		go stop()
		select {
		case <-sigs:
			stream.Close()
		case <-done:
		}
	}()

	bwr := &blockWriter{w: bw}
	buf := make([]byte, 64<<10)
	var werr error
	for {
		n, rerr := stream.Read(buf)
		if n > 0 && werr == nil {
			if werr = bwr.write(buf[:n]); werr == nil && rerr == nil {
				werr = bw.Flush()
			}
			if werr != nil {
				// The reader of our output is gone: stop the
				// capture, and read the stream to its end.
				go stop()
			}
		}
		if rerr != nil {
			break
		}
	}
	if werr == nil {
		werr = bw.Flush()
	}
	if f != nil {
		if err := f.Close(); err != nil && werr == nil {
			werr = err
		}
	}
	res, ok := stream.Result()
	if ok {
		fmt.Fprintf(os.Stderr, "%d packets captured\n%d packets received by filter\n%d packets dropped (the reader was too slow)\n", res.Captured, res.Received, res.Dropped)
	} else {
		fmt.Fprintf(os.Stderr, "%d packets written; the capture was cut before its statistics\n", bwr.packets)
	}
	if werr != nil && !errors.Is(werr, syscall.EPIPE) {
		return werr
	}
	return nil
}

// blockWriter passes on only whole pcapng blocks or pcap records, so that a
// stream cut in the middle of one still leaves a valid file.
type blockWriter struct {
	w       io.Writer
	pending []byte
	pcap    int // 0: unknown yet; 1: pcapng; 2: pcap; 3: neither (pass through)
	order   binary.ByteOrder
	packets int
}

func (b *blockWriter) write(p []byte) error {
	b.pending = append(b.pending, p...)
	for {
		n := b.unit()
		if n == 0 {
			return nil
		}
		if _, err := b.w.Write(b.pending[:n]); err != nil {
			return err
		}
		b.pending = b.pending[n:]
	}
}

// unit returns the length of the whole block or record at the start of
// pending, or 0 if it is not all there yet.
func (b *blockWriter) unit() int {
	p := b.pending
	if b.pcap == 0 {
		// A pcapng section header block is at least 28 bytes, a pcap
		// file header 24.
		if len(p) < 24 {
			return 0
		}
		le, be := binary.LittleEndian.Uint32(p), binary.BigEndian.Uint32(p)
		switch {
		case le == 0x0a0d0d0a:
			b.pcap, b.order = 1, binary.BigEndian
			if binary.LittleEndian.Uint32(p[8:]) == 0x1a2b3c4d {
				b.order = binary.LittleEndian
			}
		case le == 0xa1b23c4d || le == 0xa1b2c3d4:
			b.pcap, b.order = 2, binary.LittleEndian
			return 24
		case be == 0xa1b23c4d || be == 0xa1b2c3d4:
			b.pcap, b.order = 2, binary.BigEndian
			return 24
		default:
			b.pcap = 3
		}
	}
	switch b.pcap {
	case 1:
		if len(p) < 8 {
			return 0
		}
		n := int(b.order.Uint32(p[4:]))
		if n < 12 || len(p) < n {
			return 0
		}
		if b.order.Uint32(p) == 6 {
			b.packets++
		}
		return n
	case 2:
		if len(p) < 16 {
			return 0
		}
		n := 16 + int(b.order.Uint32(p[8:]))
		if len(p) < n {
			return 0
		}
		b.packets++
		return n
	}
	return len(p)
}

func cmdStats(args []string, stdout io.Writer) error {
	return listing(args, stdout, "stats", (*api.Client).Stats, printStats)
}

// printStats prints the counters as aligned tables.
func printStats(w io.Writer, s api.Stats) {
	printTable(w, "PORT\tKIND\tRX-PKTS\tRX-BYTES\tRX-INVALID\tRX-SAMEPORT\tRX-SPOOFED\tRX-VLANERR\tRX-DENIED\tTX-PKTS\tTX-BYTES\tTX-DROPPED\tCAPTURED\tCAPTURE-DROPPED", s.Ports, func(tw io.Writer, p api.PortCounters) {
		st := p.Stats
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", p.Name, p.Kind, st.RxPackets, st.RxBytes, st.RxErrors, st.RxFiltered,
			st.RxSpoofed, st.RxVLANErrors, st.RxDenied, st.TxPackets, st.TxBytes, st.TxDropped, p.Capture.Captured, p.Capture.Dropped)
	})
	f := s.FDB
	fmt.Fprintf(w, "\nfdb: %d entries (%d static); learned %d, moved %d, aged %d, flushed %d, evicted %d; not learned: %d ignored, %d port limit, %d table limit, %d static conflicts\n",
		f.Entries, f.Static, f.Learned, f.Moved, f.Aged, f.Flushed, f.Evicted, f.Ignored, f.LimitPort, f.LimitTotal, f.StaticConflicts)
	g := s.Gateway
	fmt.Fprintf(w, "gateway: arp requests %d, replies %d, conflicts %d; icmp echo replies %d, errors %d; tcp resets %d; rate limited %d; queue drops %d; neighbours learned %d, evicted %d\n",
		g.ARPRequests, g.ARPReplies, g.ARPConflicts, g.EchoReplies, g.ICMPErrors, g.TCPResets, g.RateLimited, g.QueueDrops, g.NeighLearned, g.NeighEvicted)
	fmt.Fprintf(w, "gateway dropped: offload %d, too big %d, malformed %d, bad ipv4 %d, bad checksum %d, martian %d, fragments %d, not for us %d, ipv6 %d, other ethertype %d, no error allowed %d, ignored %d\n",
		g.Offload, g.TooBig, g.Malformed, g.BadIPv4, g.BadChecksum, g.Martian, g.Fragments, g.NotForUs, g.IPv6, g.OtherEtherType, g.NoErrorAllowed, g.Ignored)
	fmt.Fprintf(w, "gateway routing: forwarded out %d, to containers %d, fragments sent %d; ttl exceeded %d, frag needed %d; nat drops %d, uplink errors %d; pending queued %d, dropped %d, expired %d; arp requests sent %d\n",
		g.Forwarded, g.ToContainer, g.FragmentsSent, g.TTLExceeded, g.FragNeeded, g.NATDrops, g.UplinkErrors, g.PendingQueued, g.PendingDropped, g.PendingExpired, g.ARPRequestsSent)
	if s.NAT != nil {
		fmt.Fprint(w, "nat: ")
		printConntrackStats(w, *s.NAT)
	}
	if h := s.HostUplink; h != nil {
		fmt.Fprintf(w, "host uplink: to host %d packets %d bytes, from host %d packets %d bytes; tcp active %d, total %d, refused %d, resets %d, over limit %d; udp sockets %d, total %d, dropped %d, icmp errors back %d; reassembled %d, fragments dropped %d; icmp sockets %d, total %d, denied %d, dropped %d; loopback refused %d; listeners %d, accepted %d, failed %d, spliced %d, splice failed %d; malformed %d, other dropped %d, errors %d\n",
			h.TxPackets, h.TxBytes, h.RxPackets, h.RxBytes, h.TCPActive, h.TCPTotal, h.TCPRefused, h.TCPResets, h.TCPLimit,
			h.UDPSockets, h.UDPTotal, h.UDPDropped, h.UDPErrors, h.Reassembled, h.FragmentsDropped, h.ICMPSockets, h.ICMPTotal, h.ICMPDenied, h.ICMPDropped,
			h.LoopbackRefused, h.Listeners, h.PublishAccepted, h.PublishFailed, h.PublishSpliced, h.SpliceFailed, h.Malformed, h.Other, h.Errors)
	}
	if s.DNS != nil {
		printDNSStats(w, *s.DNS)
	}
	fmt.Fprintf(w, "process: %d goroutines, %d open fds\n", s.Process.Goroutines, s.Process.OpenFDs)
	fmt.Fprintf(w, "control socket: %d connections; past the cap, %d closed idle, %d refused\n",
		s.Control.Connections, s.Control.IdleClosed, s.Control.Refused)
	if len(s.Captures) > 0 {
		fmt.Fprintln(w)
		printTable(w, "CAPTURE\tSINCE\tFORMAT\tCAPTURED\tINTERFACES (received/dropped)\tFILTER", s.Captures, func(tw io.Writer, c api.CaptureInfo) {
			var ifs []string
			for _, i := range c.Interfaces {
				ifs = append(ifs, fmt.Sprintf("%s %d/%d", i.Name, i.Received, i.Dropped))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", c.ID, c.Started.Format(time.TimeOnly), c.Format, c.Captured, strings.Join(ifs, ", "), c.Filter)
		})
	}
	if len(s.VXLAN) > 0 {
		fmt.Fprintln(w)
		printVXLANs(w, s.VXLAN) // vxlan.go
	}
}
