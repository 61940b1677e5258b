package fdb

import (
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
)

func TestParseMAC(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want MAC
		err  string // substring of the error; "" means success
	}{
		{name: "colon", in: "02:42:ac:11:00:02", want: MAC{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}},
		{name: "dash", in: "02-42-ac-11-00-02", want: MAC{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}},
		{name: "upper case", in: "02:42:AC:11:0A:FF", want: MAC{0x02, 0x42, 0xac, 0x11, 0x0a, 0xff}},
		{name: "broadcast", in: "ff:ff:ff:ff:ff:ff", want: MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{name: "zero", in: "00:00:00:00:00:00", want: MAC{}},
		{name: "empty", in: "", err: "got 0 characters"},
		{name: "short", in: "02:42:ac:11:00", err: "got 14 characters"},
		{name: "EUI-64", in: "02:42:ac:11:00:02:03:04", err: "got 23 characters"},
		{name: "single digits", in: "2:42:ac:11:0:2", err: "got 14 characters"},
		{name: "dotted", in: "0242.ac11.0002.", err: "got 15 characters"},
		{name: "no separators", in: "0242ac110002abcde", err: "separator '4' at offset 2"},
		{name: "mixed separators", in: "02:42-ac:11:00:02", err: "separator '-' at offset 5"},
		{name: "bad digit", in: "02:42:ag:11:00:02", err: `octet 3 "ag"`},
		{name: "space", in: "02:42:ac:11:00: 2", err: `octet 6 " 2"`},
		{name: "dot separator", in: "02.42.ac.11.00.02", err: "separator '.' at offset 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMAC(tt.in)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("ParseMAC(%q) error: %v", tt.in, err)
				}
				if got != tt.want {
					t.Errorf("ParseMAC(%q) = %v, want %v", tt.in, got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseMAC(%q) = %v, want error containing %q", tt.in, got, tt.err)
			}
			if !errors.Is(err, ErrInvalidMAC) {
				t.Errorf("ParseMAC(%q) error %v does not wrap ErrInvalidMAC", tt.in, err)
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseMAC(%q) error = %q, want it to contain %q", tt.in, err, tt.err)
			}
		})
	}
}

func TestMACString(t *testing.T) {
	tests := []struct {
		in   MAC
		want string
	}{
		{MAC{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}, "02:42:ac:11:00:02"},
		{MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "ff:ff:ff:ff:ff:ff"},
		{MAC{}, "00:00:00:00:00:00"},
		{MAC{0xde, 0xad, 0xbe, 0xef, 0x0a, 0xb0}, "de:ad:be:ef:0a:b0"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			// Agrees with the standard library's form.
			if got := net.HardwareAddr(tt.in[:]).String(); got != tt.want {
				t.Errorf("net.HardwareAddr.String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMACClass(t *testing.T) {
	tests := []struct {
		in                       string
		multicast, bcast, isZero bool
	}{
		{"02:42:ac:11:00:02", false, false, false},
		{"00:00:00:00:00:00", false, false, true},
		{"ff:ff:ff:ff:ff:ff", true, true, false},
		{"01:00:5e:00:00:01", true, false, false}, // IPv4 multicast
		{"33:33:00:00:00:01", true, false, false}, // IPv6 multicast
		{"01:80:c2:00:00:00", true, false, false}, // STP
		{"fe:ff:ff:ff:ff:ff", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := ParseMAC(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.IsMulticast(); got != tt.multicast {
				t.Errorf("IsMulticast() = %v, want %v", got, tt.multicast)
			}
			if got := m.IsBroadcast(); got != tt.bcast {
				t.Errorf("IsBroadcast() = %v, want %v", got, tt.bcast)
			}
			if got := m.IsZero(); got != tt.isZero {
				t.Errorf("IsZero() = %v, want %v", got, tt.isZero)
			}
		})
	}
}

func TestMACJSON(t *testing.T) {
	in := Entry{Key: Key{MAC: MAC{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}, VLAN: 7}, Port: 3}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"MAC":"02:42:ac:11:00:02"`; !strings.Contains(string(b), want) {
		t.Errorf("json.Marshal = %s, want it to contain %s", b, want)
	}
	var got Entry
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", b, err)
	}
	if got != in {
		t.Errorf("round trip = %+v, want %+v", got, in)
	}
	var m MAC
	if err := json.Unmarshal([]byte(`"02:42"`), &m); !errors.Is(err, ErrInvalidMAC) {
		t.Errorf("json.Unmarshal of a short MAC: error = %v, want ErrInvalidMAC", err)
	}
}

func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{
		"02:42:ac:11:00:02", "02-42-AC-11-00-02", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00",
		"", "02:42:ac:11:00", "02:42-ac:11:00:02", "0242.ac11.0002", "02:42:ac:11:00:02:03:04",
		"zz:zz:zz:zz:zz:zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMAC(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidMAC) {
				t.Fatalf("ParseMAC(%q) error %v does not wrap ErrInvalidMAC", s, err)
			}
		} else {
			want := strings.ToLower(strings.ReplaceAll(s, "-", ":"))
			if got := m.String(); got != want {
				t.Fatalf("ParseMAC(%q).String() = %q, want %q", s, got, want)
			}
			// Whatever we accept, the standard library reads the same.
			hw, err := net.ParseMAC(s)
			if err != nil || string(hw) != string(m[:]) {
				t.Fatalf("ParseMAC(%q) = %v, but net.ParseMAC = %v, %v", s, m, hw, err)
			}
		}
		// Any six bytes round-trip through String and ParseMAC.
		if len(s) >= 6 {
			var in MAC
			copy(in[:], s)
			out, err := ParseMAC(in.String())
			if err != nil || out != in {
				t.Fatalf("ParseMAC(%q) = %v, %v; want %v", in.String(), out, err, in)
			}
		}
	})
}
