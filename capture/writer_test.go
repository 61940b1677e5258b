package capture

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func records() []*Record {
	fr := testFrames()
	ts := time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC).UnixNano()
	return []*Record{
		{Time: ts, Iface: 0, Dir: In, Len: len(fr["echo a>b"]), Data: fr["echo a>b"]},
		{Time: ts + 1500, Iface: 1, Dir: Out, Len: len(fr["echo a>b"]), Data: fr["echo a>b"]},
		{Time: ts + 900000, Iface: 1, Dir: In, Len: 1000, Data: fr["echo b>a"][:30]},
	}
}

// writeRecords makes a writer to buf with ifaces and opts and writes the
// records of records() to it, which it returns with the writer.
func writeRecords(t *testing.T, buf *bytes.Buffer, ifaces []Interface, opts WriterOptions) (*Writer, []*Record) {
	t.Helper()
	w, err := NewWriter(buf, ifaces, opts)
	if err != nil {
		t.Fatal(err)
	}
	recs := records()
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	return w, recs
}

func TestWriterPCAPNG(t *testing.T) {
	var buf bytes.Buffer
	ifaces := []Interface{{Name: "c1", Link: LinkEthernet}, {Name: "c2", Link: LinkEthernet}}
	w, recs := writeRecords(t, &buf, ifaces, WriterOptions{Format: PCAPNG, Filter: "icmp", Application: "test"})
	start := time.Unix(0, recs[0].Time)
	if err := w.Finish([]InterfaceStats{{Interface: ifaces[0], Received: 1, Dropped: 0}, {Interface: ifaces[1], Received: 5, Dropped: 3}}, start, start.Add(time.Second)); err != nil {
		t.Fatal(err)
	}

	r, err := pcapgo.NewNgReader(bytes.NewReader(buf.Bytes()), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range recs {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(data, want.Data) || ci.Length != want.Len || ci.InterfaceIndex != want.Iface || ci.Timestamp.UnixNano() != want.Time {
			t.Errorf("packet %d: ci %+v (%d bytes), want %+v", i, ci, len(data), want)
		}
		wantDir := pcapgo.NgEpbFlagDirectionInbound
		if want.Dir == Out {
			wantDir = pcapgo.NgEpbFlagDirectionOutbound
		}
		if opts.Flags == nil || opts.Flags.Direction != wantDir {
			t.Errorf("packet %d: flags %+v, want direction %v", i, opts.Flags, wantDir)
		}
	}
	if _, _, err := r.ReadPacketData(); err != io.EOF {
		t.Errorf("after the packets: %v, want EOF", err)
	}
	if r.NInterfaces() != 2 {
		t.Fatalf("interfaces: %d, want 2", r.NInterfaces())
	}
	for i, want := range ifaces {
		got, _ := r.Interface(i)
		if got.Name != want.Name || got.LinkType != layers.LinkTypeEthernet || got.Filter != "icmp" {
			t.Errorf("interface %d: %+v", i, got)
		}
	}
	if got, _ := r.Interface(1); got.Statistics.PacketsDropped != 3 || got.Statistics.PacketsReceived != 5 {
		t.Errorf("interface 1 statistics: %+v, want 5 received, 3 dropped", got.Statistics)
	}
	if r.SectionInfo().Application != "test" {
		t.Errorf("application %q", r.SectionInfo().Application)
	}
}

func TestWriterPCAP(t *testing.T) {
	var buf bytes.Buffer
	w, recs := writeRecords(t, &buf, []Interface{{Name: "c1", Link: LinkEthernet}, {Name: "c2", Link: LinkEthernet}}, WriterOptions{Format: PCAP, Snaplen: 1000})
	if err := w.Finish(nil, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet || r.Snaplen() != 1000 {
		t.Errorf("header: link %v snaplen %d", r.LinkType(), r.Snaplen())
	}
	for i, want := range recs {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, want.Data) || ci.Length != want.Len || ci.Timestamp.UnixNano() != want.Time {
			t.Errorf("packet %d: %+v", i, ci)
		}
	}
	_, err = NewWriter(&buf, []Interface{{Name: "c1", Link: LinkEthernet}, {Name: "uplink", Link: LinkRaw}}, WriterOptions{Format: PCAP})
	if err == nil {
		t.Error("pcap with two link types: no error")
	}
}
