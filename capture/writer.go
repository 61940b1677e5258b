package capture

import (
	"bufio"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Format is a capture file format.
type Format string

// The formats a Writer writes.
const (
	// PCAPNG: one interface description block per point (its name, link
	// type, the filter), enhanced packet blocks with nanosecond
	// timestamps and the direction in their flags, and an interface
	// statistics block per point at the end with the frames received and
	// dropped.
	PCAPNG Format = "pcapng"
	// PCAP: the classic format, nanosecond timestamps (magic a1b23c4d);
	// one link type for the whole file and no interface names.
	PCAP Format = "pcap"
)

// ParseFormat accepts "pcapng" (or "") and "pcap".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "", "pcapng":
		return PCAPNG, nil
	case "pcap":
		return PCAP, nil
	}
	return "", fmt.Errorf("format %q: pcapng or pcap", s)
}

// ContentType is the media type of the format.
func (f Format) ContentType() string {
	if f == PCAP {
		return "application/vnd.tcpdump.pcap"
	}
	return "application/x-pcapng"
}

// WriterOptions describe a capture file.
type WriterOptions struct {
	Format      Format
	Snaplen     int    // 0 means DefaultSnaplen
	Filter      string // recorded in each pcapng interface block
	Application string // recorded in the pcapng section header
}

// Writer writes records to a pcapng or pcap stream. It buffers: call Flush
// to push what was written to the underlying writer. It is not safe for
// concurrent use.
type Writer struct {
	format Format
	ng     *pcapgo.NgWriter
	pc     *pcapgo.Writer
	bw     *bufio.Writer // under pc
	n      int           // interfaces in the file
}

// NewWriter writes the file's header (and for pcapng the interface blocks of
// ifaces) to w. A pcap file cannot hold interfaces of different link types.
func NewWriter(w io.Writer, ifaces []Interface, o WriterOptions) (*Writer, error) {
	if len(ifaces) == 0 {
		return nil, fmt.Errorf("capture file: no interface")
	}
	if o.Snaplen == 0 {
		o.Snaplen = DefaultSnaplen
	}
	wr := &Writer{format: o.Format, n: len(ifaces)}
	switch o.Format {
	case PCAP:
		for _, i := range ifaces[1:] {
			if i.Link != ifaces[0].Link {
				return nil, fmt.Errorf("pcap cannot hold %s (link type %d) with %s (link type %d): use pcapng", ifaces[0].Name, ifaces[0].Link, i.Name, i.Link)
			}
		}
		wr.bw = bufio.NewWriterSize(w, 64<<10)
		wr.pc = pcapgo.NewWriterNanos(wr.bw)
		if err := wr.pc.WriteFileHeader(uint32(o.Snaplen), layers.LinkType(ifaces[0].Link)); err != nil {
			return nil, err
		}
	case PCAPNG:
		app := o.Application
		if app == "" {
			app = "tapswitch"
		}
		intf := func(i Interface) pcapgo.NgInterface {
			return pcapgo.NgInterface{
				Name:                i.Name,
				Description:         "tapswitch " + i.Name,
				Filter:              o.Filter,
				OS:                  runtime.GOOS,
				LinkType:            layers.LinkType(i.Link),
				SnapLength:          uint32(o.Snaplen),
				TimestampResolution: 9,
			}
		}
		var err error
		wr.ng, err = pcapgo.NewNgWriterInterface(w, intf(ifaces[0]), pcapgo.NgWriterOptions{
			SectionInfo: pcapgo.NgSectionInfo{Hardware: runtime.GOARCH, OS: runtime.GOOS, Application: app},
		})
		if err != nil {
			return nil, err
		}
		for _, i := range ifaces[1:] {
			if _, err := wr.ng.AddInterface(intf(i)); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("capture file: unknown format %q", o.Format)
	}
	return wr, nil
}

// Write writes one record.
func (w *Writer) Write(r *Record) error {
	ci := gopacket.CaptureInfo{
		Timestamp:      time.Unix(0, r.Time),
		CaptureLength:  len(r.Data),
		Length:         r.Len,
		InterfaceIndex: r.Iface,
	}
	if w.pc != nil {
		ci.InterfaceIndex = 0
		return w.pc.WritePacket(ci, r.Data)
	}
	flags := pcapgo.NgEpbFlags{}
	switch r.Dir {
	case In:
		flags.Direction = pcapgo.NgEpbFlagDirectionInbound
	case Out:
		flags.Direction = pcapgo.NgEpbFlagDirectionOutbound
	}
	return w.ng.WritePacketWithOptions(ci, r.Data, pcapgo.NgPacketOptions{Flags: &flags})
}

// Flush writes buffered data to the underlying writer.
func (w *Writer) Flush() error {
	if w.pc != nil {
		return w.bw.Flush()
	}
	return w.ng.Flush()
}

// Finish ends the file: for pcapng, an interface statistics block per
// interface with the frames received (that passed the filter) and dropped
// between start and end; then it flushes.
func (w *Writer) Finish(stats []InterfaceStats, start, end time.Time) error {
	if w.ng != nil {
		for i, s := range stats {
			if i >= w.n {
				break
			}
			err := w.ng.WriteInterfaceStats(i, pcapgo.NgInterfaceStatistics{
				LastUpdate:      end,
				StartTime:       start,
				EndTime:         end,
				PacketsReceived: s.Received,
				PacketsDropped:  s.Dropped,
			})
			if err != nil {
				return err
			}
		}
	}
	return w.Flush()
}
