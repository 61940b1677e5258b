package vxlan

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestHeader(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		vni  uint32
		err  error
	}{
		// flags (I), 3 reserved, VNI 24 bits, 1 reserved
		{"vni 42", []byte{0x08, 0, 0, 0, 0, 0, 42, 0}, 42, nil},
		{"max vni", []byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0}, MaxVNI, nil},
		{"reserved bits ignored", []byte{0x08 | 0x80, 1, 2, 3, 0, 1, 0, 9}, 256, nil},
		{"no I flag", []byte{0, 0, 0, 0, 0, 0, 42, 0}, 0, ErrNoVNI},
		{"short", []byte{0x08, 0, 0, 0, 0, 0, 42}, 0, io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			vni, err := ParseHeader(c.in)
			if vni != c.vni || !errors.Is(err, c.err) {
				t.Errorf("ParseHeader(%x) = %d, %v; want %d, %v", c.in, vni, err, c.vni, c.err)
			}
		})
	}
	b := make([]byte, HeaderLen)
	PutHeader(b, 0x123456)
	if want := []byte{0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0}; !bytes.Equal(b, want) {
		t.Errorf("PutHeader: %x, want %x", b, want)
	}
}

func FuzzHeader(f *testing.F) {
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 42, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		vni, err := ParseHeader(b)
		if err != nil {
			return
		}
		if vni > MaxVNI {
			t.Fatalf("vni %d above MaxVNI", vni)
		}
		out := make([]byte, HeaderLen)
		PutHeader(out, vni)
		if got, err := ParseHeader(out); err != nil || got != vni {
			t.Fatalf("round trip of %d: %d, %v", vni, got, err)
		}
	})
}
