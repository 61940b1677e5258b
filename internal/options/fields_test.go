package options

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// spec is what the tests read with Fields.
type spec struct {
	name string
	n    int
	addr netip.Addr
	pfx  netip.Prefix
	mac  net.HardwareAddr
}

func readSpec(items []string) (spec, error) {
	var s spec
	err := Fields(items, errBadSpec,
		Field{Key: "name", Set: String(&s.name)},
		Field{Key: "n", Set: Int(&s.n)},
		Field{Key: "addr", Set: Addr(&s.addr)},
		Field{Key: "ip", Set: Prefix(&s.pfx, "10.0.0.2/24")},
		Field{Key: "mac", Set: MAC(&s.mac)},
	)
	return s, err
}

var errBadSpec = errors.New("bad spec")

func TestFields(t *testing.T) {
	s, err := readSpec([]string{"name=x", "n=42", "addr=10.0.0.1", "ip=10.0.0.2/24", "mac=02:00:00:00:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	want := spec{"x", 42, netip.MustParseAddr("10.0.0.1"), netip.MustParsePrefix("10.0.0.2/24"), net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	if s.name != want.name || s.n != want.n || s.addr != want.addr || s.pfx != want.pfx || s.mac.String() != want.mac.String() {
		t.Errorf("got %+v, want %+v", s, want)
	}
	for _, tt := range []struct {
		items []string
		want  string
	}{
		{[]string{"n=x"}, "bad spec: n=x: not a number"},
		{[]string{"addr=10.0.0"}, "bad spec: addr=10.0.0: not an IP address"},
		{[]string{"ip=10.0.0.2"}, "bad spec: ip=10.0.0.2: not an address with a prefix length such as 10.0.0.2/24"},
		{[]string{"mac=zz"}, "bad spec: mac=zz: address zz: invalid MAC address"},
		{[]string{"size=3"}, `bad spec: unknown key "size" (known: name, n, addr, ip, mac)`},
		{[]string{"n=1", "n=2"}, "bad spec: n given twice"},
	} {
		_, err := readSpec(tt.items)
		if !errors.Is(err, errBadSpec) || err.Error() != tt.want {
			t.Errorf("%q: got %v, want %q", tt.items, err, tt.want)
		}
	}
}

func FuzzFields(f *testing.F) {
	for _, s := range []string{"name=x,n=1", "n=x", "ip=1.2.3.4/8,mac=02:00:00:00:00:01", "a,b", "addr=::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		_, err := readSpec(strings.Split(in, ","))
		if err != nil && !errors.Is(err, errBadSpec) {
			t.Fatalf("%q: %v does not wrap the spec's error", in, err)
		}
	})
}
