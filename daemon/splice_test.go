package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/uplink"
	"github.com/tapswitch/tapswitch/uplink/host"
)

// TestDialLocalDeclines checks that the daemon's LocalDialer declines
// (uplink.ErrNoLocalPath, so the uplink uses the netstack without counting
// a failure) a port nobody published and, while an ACL rule exists, any
// port, for IPv4 and IPv6 clients alike; and that the host uplink got it
// as its dialer.
func TestDialLocalDeclines(t *testing.T) {
	d := newTestDaemon(t, Config{Uplink: &host.Config{}})
	if _, ok := d.nat.up.(uplink.LocalSplicer); !ok {
		t.Fatal("the host uplink is not a LocalSplicer")
	}
	for _, tt := range []struct {
		name string
		rule *api.Rule
		want string
	}{
		{"not published", nil, "18555/tcp is not published"},
		{"an ACL rule", &api.Rule{Action: "count"}, "ACL rules or captures"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rule != nil {
				if _, err := d.AddRule(*tt.rule); err != nil {
					t.Fatal(err)
				}
			}
			for _, v6 := range []bool{false, true} {
				c, err := d.dialLocal(t.Context(), 18555, v6)
				if c != nil || !errors.Is(err, uplink.ErrNoLocalPath) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("dialLocal (v6 %t): %v, %v; want ErrNoLocalPath with %q", v6, c, err, tt.want)
				}
			}
		})
	}
}
