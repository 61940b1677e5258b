package capture

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

// run runs the compiled filter on frame.
func run(t testing.TB, f *Filter, link LinkType, frame []byte) bool {
	t.Helper()
	prog, err := f.Compile(link, 65535)
	if err != nil {
		t.Fatalf("compile %q: %v", f, err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("filter %q: bpf.NewVM: %v\n%v", f, err, prog)
	}
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatalf("filter %q: run: %v", f, err)
	}
	return n > 0
}

func TestFilterMatches(t *testing.T) {
	frames := testFrames()
	tests := []struct {
		expr string
		want []string // names of the frames that match
	}{
		{"", nil}, // every frame: checked below
		{"icmp", []string{"echo a>b", "echo b>a"}},
		{"ip", []string{"echo a>b", "echo b>a", "tcp a:40000>b:80", "tcp opts b:80>a", "tcp fragment", "udp 53", "truncated ip"}},
		{"ip6", []string{"udp6 443", "icmp6"}},
		{"arp", []string{"arp request"}},
		{"tcp", []string{"tcp a:40000>b:80", "tcp opts b:80>a", "tcp fragment"}},
		{"udp", []string{"udp 53", "udp6 443"}},
		{"icmp6", []string{"icmp6"}},
		{"host 10.90.0.3", []string{"echo a>b", "echo b>a", "tcp a:40000>b:80", "tcp opts b:80>a", "tcp fragment", "arp request"}},
		{"ip host 10.90.0.3", []string{"echo a>b", "echo b>a", "tcp a:40000>b:80", "tcp opts b:80>a", "tcp fragment"}},
		{"src host 10.90.0.3", []string{"echo b>a", "tcp opts b:80>a"}},
		{"dst 10.90.0.3 and icmp", []string{"echo a>b"}},
		{"src and dst net 10.90.0.0/16", []string{"echo a>b", "echo b>a", "tcp a:40000>b:80", "tcp opts b:80>a", "tcp fragment", "arp request"}},
		{"net 198.51.100.0 mask 255.255.255.0", []string{"udp 53"}},
		{"198.51.100.0/24", []string{"udp 53"}},
		{"port 80", []string{"tcp a:40000>b:80", "tcp opts b:80>a"}},
		{"tcp dst port 80", []string{"tcp a:40000>b:80"}},
		{"udp port 53 or 443", []string{"udp 53", "udp6 443"}},
		{"portrange 400-500", []string{"udp6 443"}},
		{"ip6 host 2001:db8::3", []string{"udp6 443"}},
		{"net 2001:db8::/32", []string{"udp6 443"}},
		{"ether host 02:42:0a:5a:00:03 and not arp", []string{"echo a>b", "echo b>a", "tcp a:40000>b:80", "tcp opts b:80>a", "tcp fragment", "udp 53", "udp6 443", "vlan 5 ip", "truncated ip"}},
		{"ether src 02:42:0a:5a:00:03", []string{"echo b>a", "tcp opts b:80>a"}},
		{"ether broadcast", []string{"arp request", "icmp6"}},
		{"broadcast or multicast", []string{"arp request", "icmp6"}},
		{"vlan", []string{"vlan 5 ip"}},
		{"vlan 5", []string{"vlan 5 ip"}},
		{"vlan 6", nil},
		{"ether proto 0x0806", []string{"arp request"}},
		{"ip proto 17", []string{"udp 53"}},
		{"proto 17", []string{"udp 53", "udp6 443"}},
		{"greater 60", []string{"udp6 443", "icmp6", "tcp opts b:80>a"}},
		{"less 20", []string{"truncated ip", "runt"}},
		// A field beyond the end of the frame fails the whole filter, as a
		// BPF load out of bounds does: the runt matches no test of it.
		{"not ip and not ip6", []string{"arp request", "vlan 5 ip"}},
		{"!(ip or ip6) && !arp", []string{"vlan 5 ip"}},
		// and and or have equal precedence, from the left:
		// (arp or icmp) and src host 10.90.0.3.
		{"arp or icmp and src host 10.90.0.3", []string{"echo b>a"}},
		{"(tcp or udp) and not port 80", []string{"tcp fragment", "udp 53", "udp6 443"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := ParseFilter(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for name, fr := range frames {
				m := f.Match(fr, LinkEthernet)
				if b := run(t, f, LinkEthernet, fr); b != m {
					t.Errorf("%s: bpf %v, Match %v", name, b, m)
				}
				if m {
					got = append(got, name)
				}
			}
			want := tt.want
			if tt.expr == "" {
				for name := range frames {
					want = append(want, name)
				}
			}
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("matching frames:\ngot  %q\nwant %q", got, want)
			}
		})
	}
}

func TestFilterRawIP(t *testing.T) {
	pkt := ipv4("10.90.0.2", "198.51.100.1", protoUDP, 5, 0, l4(5353, 53))
	pkt6 := ipv6("2001:db8::2", "2001:db8::3", protoTCP, l4(50000, 443))
	tests := []struct {
		expr      string
		want4, w6 bool
	}{
		{"ip", true, false},
		{"ip6", false, true},
		{"udp port 53", true, false},
		{"tcp port 443", false, true},
		{"host 198.51.100.1", true, false},
		{"arp or ether host 02:42:0a:5a:00:02 or vlan or ether broadcast", false, false},
		{"not arp", true, true},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			pkt  []byte
			want bool
		}{{pkt, tt.want4}, {pkt6, tt.w6}} {
			if got := run(t, f, LinkRaw, c.pkt); got != c.want || f.Match(c.pkt, LinkRaw) != c.want {
				t.Errorf("%q on raw IPv%d: bpf %v, Match %v, want %v", tt.expr, c.pkt[0]>>4, got, f.Match(c.pkt, LinkRaw), c.want)
			}
		}
	}
}

func TestFilterErrors(t *testing.T) {
	for _, expr := range []string{
		"tcp port", "host", "host example.com", "port http", "port 70000", "portrange 1-", "net 10.0.0.1/8",
		"ip host 2001:db8::1", "ip6 host 10.0.0.1", "tcp host 10.0.0.1", "udp net 10.0.0.0/8", "ether", "ether net 10.0.0.0/8",
		"ether host 10.0.0.1", "(icmp", "icmp)", "icmp and", "and icmp", "not", "foo", "icmp & udp", "vlan 4096",
		"greater", "less x", "net 10.0.0.0 mask 255.0.255.0", "ip proto 256", "10.0.0.1 10.0.0.2",
	} {
		t.Run(expr, func(t *testing.T) {
			_, err := ParseFilter(expr)
			if !errors.Is(err, ErrBadFilter) {
				t.Errorf("ParseFilter(%q): got %v, want an error wrapping ErrBadFilter", expr, err)
			}
		})
	}
}

// fuzzExprs are the expressions FuzzFilterFrames runs on random frames.
var fuzzExprs = []string{
	"icmp", "arp", "ip6", "tcp port 80", "udp src port 53 or 443", "portrange 1000-2000", "host 10.90.0.3",
	"src net 10.0.0.0/8 and not dst host 10.90.0.1", "ip6 net 2001:db8::/33", "ether dst 02:42:0a:5a:00:03",
	"vlan 5 or ether broadcast", "greater 60 and less 1000", "src and dst port 22", "multicast", "proto 132",
	"net 0.0.0.0/0", "net ::/0",
}

// FuzzFilterFrames checks that for any frame the compiled BPF program and the
// direct matcher agree, on both link types.
func FuzzFilterFrames(f *testing.F) {
	for _, fr := range testFrames() {
		f.Add(fr)
	}
	type compiled struct {
		f    *Filter
		link LinkType
		vm   *bpf.VM
	}
	var progs []compiled
	for _, e := range fuzzExprs {
		flt, err := ParseFilter(e)
		if err != nil {
			f.Fatal(err)
		}
		for _, link := range []LinkType{LinkEthernet, LinkRaw} {
			prog, err := flt.Compile(link, 100)
			if err != nil {
				f.Fatal(err)
			}
			vm, err := bpf.NewVM(prog)
			if err != nil {
				f.Fatal(err)
			}
			progs = append(progs, compiled{flt, link, vm})
		}
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, c := range progs {
			n, _ := c.vm.Run(frame)
			if m := c.f.Match(frame, c.link); (n > 0) != m {
				t.Errorf("%q (link %d) on % x: bpf %v, Match %v", c.f, c.link, frame, n > 0, m)
			}
		}
	})
}

// FuzzFilterParse checks that no expression makes the parser or compiler
// panic, and that what parses compiles to a valid program that agrees with
// the matcher on the test frames.
func FuzzFilterParse(f *testing.F) {
	for _, e := range fuzzExprs {
		f.Add(e)
	}
	f.Add("((not (arp)) or tcp dst portrange 1-65535) && ! src or dst 10.0.0.1")
	f.Add("host 10.1.1.1 or 10.1.1.2 and port 1 or 2")
	frames := testFrames()
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := ParseFilter(expr)
		if err != nil {
			if !errors.Is(err, ErrBadFilter) {
				t.Fatalf("ParseFilter(%q): %v does not wrap ErrBadFilter", expr, err)
			}
			return
		}
		for _, link := range []LinkType{LinkEthernet, LinkRaw} {
			prog, err := flt.Compile(link, 100)
			if err != nil {
				if errors.Is(err, ErrBadFilter) {
					return // too long to compile
				}
				t.Fatal(err)
			}
			vm, err := bpf.NewVM(prog)
			if err != nil {
				t.Fatalf("%q: invalid program: %v", expr, err)
			}
			for name, fr := range frames {
				n, _ := vm.Run(fr)
				if (n > 0) != flt.Match(fr, link) {
					t.Errorf("%q (link %d) on %s: bpf %v, Match %v", expr, link, name, n > 0, !(n > 0))
				}
			}
		}
	})
}
