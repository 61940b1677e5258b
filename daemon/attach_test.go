package daemon

import (
	"errors"
	"net/netip"
	"testing"

	taplink "github.com/tapswitch/tapswitch/uplink/tap"
)

// TestCheckPrivileges: the routed TAP uplink is refused exactly when the
// process lacks CAP_NET_ADMIN or CAP_SYS_ADMIN; nothing else needs them.
func TestCheckPrivileges(t *testing.T) {
	if err := checkPrivileges(Config{}); err != nil {
		t.Errorf("checkPrivileges without a TAP uplink: %v, want nil", err)
	}
	cfg := Config{Uplink: &taplink.Config{Netns: "/run/netns/x", Addr: netip.MustParsePrefix("203.0.113.2/24")}}
	err := checkPrivileges(cfg)
	if privileged() {
		if err != nil {
			t.Errorf("checkPrivileges with a TAP uplink, privileged: %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, ErrForbidden) {
		t.Errorf("checkPrivileges with a TAP uplink, unprivileged: %v, want ErrForbidden", err)
	}
}
