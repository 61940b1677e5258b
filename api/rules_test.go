package api

import (
	"strings"
	"testing"
)

func TestRuleValidate(t *testing.T) {
	tests := []struct {
		name string
		r    Rule
		want string // in the error; "" for valid
	}{
		{"drop anything", Rule{Action: "drop"}, ""},
		{"tcp 22", Rule{Port: "a", Proto: ProtoTCP, DPortLo: 22, DPortHi: 22, Action: "drop"}, ""},
		{"udp range", Rule{Proto: ProtoUDP, SPortLo: 1000, SPortHi: 2000, Action: "count"}, ""},
		{"allow pair", Rule{SrcPort: "a", DstPort: "b", Action: "allow"}, ""},
		{"mirror", Rule{Port: "a", Action: "mirror", MirrorTo: "m"}, ""},
		{"ipv4 with prefix", Rule{EtherType: EtherTypeIPv4, Src: "10.90.0.0/24", Action: "drop"}, ""},
		{"macs", Rule{SrcMAC: "02:42:0a:5a:00:02", DstMAC: "ff:ff:ff:ff:ff:ff", Action: "drop"}, ""},
		{"vlan", Rule{VLAN: 4094, Action: "drop"}, ""},
		{"no action", Rule{}, `action ""`},
		{"bad action", Rule{Action: "reject"}, `action "reject"`},
		{"mirror without port", Rule{Action: "mirror"}, "mirror PORT"},
		{"port on drop", Rule{Action: "drop", MirrorTo: "m"}, "only a mirror rule"},
		{"vlan 4095", Rule{VLAN: 4095, Action: "drop"}, "VLAN 4095"},
		{"bad mac", Rule{SrcMAC: "02:42", Action: "drop"}, "--src-mac"},
		{"mac in dot notation (the switch takes colons or dashes)", Rule{DstMAC: "0000.5e00.5301", Action: "drop"}, "--dst-mac"},
		{"mac of 8 octets", Rule{SrcMAC: "02:42:0a:5a:00:02:00:01", Action: "drop"}, "--src-mac"},
		{"small ethertype", Rule{EtherType: 0x05dc, Action: "drop"}, "0x0600"},
		{"ipv6 prefix", Rule{Dst: "fd00::/8", Action: "drop"}, ""},
		{"mixed families", Rule{Src: "10.0.0.0/8", Dst: "fd00::/8", Action: "drop"}, "one family"},
		{"ipv6 prefix with a protocol", Rule{Dst: "fd00::/8", Proto: 6, Action: "drop"}, "IPv4 packets only"},
		{"ipv6 prefix with arp", Rule{Dst: "fd00::/8", EtherType: 0x0806, Action: "drop"}, "IPv6 packets only"},
		{"host bits", Rule{Src: "10.90.0.5/16", Action: "drop"}, "did you mean 10.90.0.0/16"},
		{"proto with arp", Rule{EtherType: EtherTypeARP, Proto: ProtoTCP, Action: "drop"}, "IPv4 packets only, not ethertype arp"},
		{"dport without proto", Rule{DPortLo: 22, DPortHi: 22, Action: "drop"}, "--dport needs --proto tcp or --proto udp"},
		{"dport with icmp", Rule{Proto: ProtoICMP, DPortLo: 22, DPortHi: 22, Action: "drop"}, "--dport needs --proto tcp or udp, not icmp"},
		{"sport reversed", Rule{Proto: ProtoTCP, SPortLo: 30, SPortHi: 20, Action: "drop"}, "--sport 30-20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Fatalf("Validate() = %q: want one line", err)
			}
		})
	}
}

func TestParsers(t *testing.T) {
	for _, tt := range []struct {
		in     string
		lo, hi uint16
		ok     bool
	}{{"22", 22, 22, true}, {"8000-8100", 8000, 8100, true}, {"65535", 65535, 65535, true},
		{"0", 0, 0, false}, {"65536", 0, 0, false}, {"20-10", 0, 0, false}, {"a", 0, 0, false}, {"1-", 0, 0, false}} {
		lo, hi, err := ParsePortRange(tt.in)
		if (err == nil) != tt.ok || lo != tt.lo || hi != tt.hi {
			t.Errorf("ParsePortRange(%q) = %d, %d, %v; want %d, %d, ok=%v", tt.in, lo, hi, err, tt.lo, tt.hi, tt.ok)
		}
	}
	for _, tt := range []struct {
		in   string
		want uint8
		ok   bool
	}{{"tcp", 6, true}, {"UDP", 17, true}, {"icmp", 1, true}, {"47", 47, true}, {"0", 0, false}, {"256", 0, false}, {"sctp", 0, false}} {
		got, err := ParseProto(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseProto(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	for _, tt := range []struct {
		in   string
		want uint16
		ok   bool
	}{{"ipv4", 0x0800, true}, {"arp", 0x0806, true}, {"ipv6", 0x86dd, true}, {"0x88cc", 0x88cc, true}, {"0x05dc", 0, false}, {"x", 0, false}} {
		got, err := ParseEtherType(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseEtherType(%q) = %#x, %v; want %#x, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	for _, tt := range []struct{ in, want string }{{"10.90.0.2", "10.90.0.2/32"}, {"10.90.0.0/24", "10.90.0.0/24"}, {"10.90.0.1/24", ""}, {"::1", "::1/128"}, {"fd42:1::/64", "fd42:1::/64"}, {"fd42:1::1/64", ""}, {"::ffff:10.0.0.1", ""}, {"x", ""}} {
		got, err := ParsePrefix(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ParsePrefix(%q) = %s, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParsePrefix(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestRuleMatch(t *testing.T) {
	for _, tt := range []struct {
		r    Rule
		want string
	}{
		{Rule{Action: "drop"}, "any"},
		{Rule{Port: "a", Proto: ProtoTCP, DPortLo: 22, DPortHi: 22}, "port=a proto=tcp dport=22"},
		{Rule{SrcPort: "a", DstPort: "b", VLAN: 10, EtherType: 0x88cc, Src: "10.0.0.0/8", Proto: ProtoUDP, SPortLo: 1, SPortHi: 1023},
			"src-port=a dst-port=b vlan=10 ethertype=0x88cc src=10.0.0.0/8 proto=udp sport=1-1023"},
	} {
		if got := tt.r.Match(); got != tt.want {
			t.Errorf("Match() = %q, want %q", got, tt.want)
		}
	}
}

func TestPortVLANs(t *testing.T) {
	if got := (Port{VLAN: 10}).VLANs(); got != "10" {
		t.Errorf("access port: %q, want 10", got)
	}
	if got := (Port{VLAN: 1, Trunk: []uint16{10, 20}}).VLANs(); got != "1,T:10,20" {
		t.Errorf("trunk: %q, want 1,T:10,20", got)
	}
}
