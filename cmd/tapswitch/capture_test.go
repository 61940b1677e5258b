package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tapswitch/tapswitch/capture"
)

// TestBlockWriterCut: a stream cut anywhere leaves a file that ends at a
// whole block, for pcapng and pcap alike.
func TestBlockWriterCut(t *testing.T) {
	for _, format := range []capture.Format{capture.PCAPNG, capture.PCAP} {
		var stream bytes.Buffer
		w, err := capture.NewWriter(&stream, []capture.Interface{{Name: "c1", Link: capture.LinkEthernet}}, capture.WriterOptions{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		frame := make([]byte, 98)
		for i := range 5 {
			frame[0] = byte(i)
			if err := w.Write(&capture.Record{Time: time.Now().UnixNano(), Len: len(frame), Data: frame}); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		full := stream.Bytes()
		for cut := 0; cut <= len(full); cut++ {
			var out bytes.Buffer
			bw := &blockWriter{w: &out}
			// Feed it in pieces of 7 bytes, as a network might.
			for i := 0; i < cut; i += 7 {
				if err := bw.write(full[i:min(i+7, cut)]); err != nil {
					t.Fatal(err)
				}
			}
			n := count(t, format, out.Bytes())
			if n != bw.packets || (cut == len(full) && n != 5) {
				t.Fatalf("%s cut at %d: file has %d packets, writer counted %d", format, cut, n, bw.packets)
			}
		}
	}
}

// count reads a capture file and returns its packets; an empty file has
// none, and anything else must parse to its end.
func count(t *testing.T, format capture.Format, b []byte) int {
	t.Helper()
	if len(b) == 0 {
		return 0
	}
	n := 0
	if format == capture.PCAP {
		r, err := pcapgo.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("pcap header: %v", err)
		}
		for {
			if _, _, err := r.ReadPacketData(); err != nil {
				return n
			}
			n++
		}
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil && len(b) < 100 {
		return 0 // the section header block alone: pcapgo wants an interface
	}
	if err != nil {
		t.Fatalf("pcapng header (%d bytes): %v", len(b), err)
	}
	for {
		_, _, err := r.ReadPacketData()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("pcapng after %d packets: %v", n, err)
			}
			return n
		}
		n++
	}
}
