package tap

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tapswitch/tapswitch/uplink"
)

// TestKind: the tap kind is registered, parses its options as ParseSpec
// does, and refuses without I/O a link that overlaps the containers'
// subnet.
func TestKind(t *testing.T) {
	const spec = "tap,netns=/x,ip=198.51.100.2/24"
	s, err := uplink.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := s.(*Config)
	if !ok || s.Kind() != Name {
		t.Fatalf("uplink.Parse(%q): got a %T of kind %q, want a *Config of kind %q", spec, s, s.Kind(), Name)
	}
	want, _ := ParseSpec(spec)
	if c.String() != want.String() {
		t.Errorf("uplink.Parse: got %s, ParseSpec gives %s", c, want)
	}
	if _, ok := s.(uplink.Privileged); !ok {
		t.Errorf("a tap spec does not say it needs root")
	}
	for _, subnet := range []string{"198.51.100.0/24", "198.51.0.0/16", "198.51.100.128/25"} {
		_, err := s.Open(uplink.Env{Subnet: netip.MustParsePrefix(subnet), MTU: 1500})
		if !errors.Is(err, uplink.ErrInvalidSpec) || !strings.Contains(err.Error(), "overlaps the containers' subnet") {
			t.Errorf("Open with subnet %s: got %v, want an ErrInvalidSpec about the overlap", subnet, err)
		}
	}
	if _, err := uplink.Parse("tap,netns=/x"); !errors.Is(err, uplink.ErrInvalidSpec) {
		t.Errorf("uplink.Parse without ip: got %v, want ErrInvalidSpec", err)
	}
}
