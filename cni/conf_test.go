package cni

import (
	"regexp"
	"testing"

	"github.com/tapswitch/tapswitch/switch/tap"
)

func TestPortName(t *testing.T) {
	tests := []struct{ pod, id, ifname, want string }{
		{"web1", "0123456789abcdef", "eth0", "web1"},
		{"", "0123456789abcdef", "eth0", "0123456789ab"},
		{"", "abc", "eth0", "abc"},
		{"web1", "0123456789abcdef", "eth1", "web1.eth1"},
		{"-x", "0123456789abcdef", "eth0", "0123456789ab"},
		{"ns/pod", "0123456789abcdef", "", "0123456789ab"},
		{"web1", "0123456789abcdef", "eth@1", "web1.eth-1"},
	}
	for _, tt := range tests {
		if got := portName(tt.pod, tt.id, tt.ifname); got != tt.want {
			t.Errorf("portName(%q, %q, %q) = %q, want %q", tt.pod, tt.id, tt.ifname, got, tt.want)
		}
	}
}

// FuzzPortName checks that the port name made from any pod name, CNI
// container ID and interface name passes the daemon's rule for port names
// (daemon/attach.go's nameRE), for the container IDs and interface names
// the CNI spec and the kernel allow.
func FuzzPortName(f *testing.F) {
	daemonRule := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)
	cniID := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)
	f.Add("web1", "0123456789abcdef", "eth0")
	f.Add("", "c", "eth@1")
	f.Add("ns/pod", "abc.def", "\u00e9th1")
	f.Fuzz(func(t *testing.T, pod, id, ifname string) {
		if !cniID.MatchString(id) || tap.ValidIfName(ifname) != nil {
			return
		}
		if got := portName(pod, id, ifname); !daemonRule.MatchString(got) {
			t.Errorf("portName(%q, %q, %q) = %q, which the daemon refuses", pod, id, ifname, got)
		}
	})
}
