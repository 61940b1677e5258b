package daemon

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tapswitch/tapswitch/api"
)

// TestStatePorts: the attachments of --live-restore survive a write and a
// read of the state file, the whole request included.
func TestStatePorts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ts.state.json")
	st := state{Version: stateVersion, NextRuleID: 1, Rules: []api.Rule{}, Ports: []savedPort{{
		Request: api.AttachRequest{Netns: "/run/netns/c1", Name: "c1", VLAN: 10, Trunk: []uint16{20}, Publish: []string{"8080:80"}, AllowSpoof: true},
		Name:    "c1", IfName: "eth0", Netns: "/run/netns/c1", NetnsInode: 4026532000,
		MAC: "02:42:0a:5a:00:02", IP: "10.90.0.2", Publish: []string{"8080:80/tcp"},
	}}}
	if err := st.save(path); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Errorf("loaded %+v, want %+v", got, st)
	}
}

// TestLiveRestoreConfig: --live-restore needs a state file; with one, it
// is allowed with the namespace helper (and without root) too.
func TestLiveRestoreConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no state file", Config{LiveRestore: true}, ErrInvalid},
		{"with the helper", Config{LiveRestore: true, AttachHelper: true, StatePath: "/x"}, nil},
		{"state file", Config{LiveRestore: true, StatePath: "/x"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkPrivileges(tt.cfg); !errors.Is(err, tt.want) {
				t.Errorf("checkPrivileges: %v, want %v", err, tt.want)
			}
		})
	}
}
