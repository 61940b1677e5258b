package api

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseVXLAN(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want VXLANSpec
		err  string
	}{
		{in: "vni=42,local=198.51.100.1,remote=198.51.100.2",
			want: VXLANSpec{VNI: 42, Local: "198.51.100.1", Remotes: []string{"198.51.100.2"}}},
		{in: "vni=7,local=198.51.100.1,remote=198.51.100.2,remote=198.51.100.3,port=47890,mtu=9000,vlan=10",
			want: VXLANSpec{VNI: 7, Local: "198.51.100.1", Remotes: []string{"198.51.100.2", "198.51.100.3"}, Port: 47890, MTU: 9000, VLAN: 10}},
		{in: "vni=42,local=198.51.100.1,remote=198.51.100.2,suppress=off",
			want: VXLANSpec{VNI: 42, Local: "198.51.100.1", Remotes: []string{"198.51.100.2"}, Suppress: "off"}},
		{in: "vni=42,local=198.51.100.1,remote=198.51.100.2,suppress=on",
			want: VXLANSpec{VNI: 42, Local: "198.51.100.1", Remotes: []string{"198.51.100.2"}, Suppress: "on"}},
		{in: "vni=1,local=198.51.100.1,remote=198.51.100.2,suppress=yes", err: "on or off"},
		{in: "local=198.51.100.1,remote=198.51.100.2", err: "vni= is required"},
		{in: "vni=16777216,local=198.51.100.1,remote=198.51.100.2", err: "not a number of 24 bits"},
		{in: "vni=1,local=198.51.100.1", err: "at least one remote"},
		{in: "vni=1,local=x,remote=198.51.100.2", err: "not an IP address"},
		{in: "vni=1,local=198.51.100.1,remote=2001:db8::1", err: "different families"},
		{in: "vni=1,local=198.51.100.1,remote=198.51.100.2,vlan=4095", err: "VLAN 4095"},
		{in: "vni=1,local=198.51.100.1,remote=198.51.100.2,port=0", err: "port 0"},
		{in: "vni=1,local=198.51.100.1,remote=198.51.100.2,mtu=100", err: "below 576"},
		{in: "vni=1,vni=2,local=198.51.100.1,remote=198.51.100.2", err: "given twice"},
		{in: "vni=1,local=198.51.100.1,remote=198.51.100.2,group=239.1.1.1", err: "unknown key"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVXLAN(tt.in)
			if tt.err != "" {
				if err == nil || !errors.Is(err, ErrBadVXLAN) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %+v, %v; want an ErrBadVXLAN with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			if back, err := ParseVXLAN(got.String()); err != nil || !reflect.DeepEqual(back, got) {
				t.Errorf("String round trip: %q gives %+v, %v", got.String(), back, err)
			}
		})
	}
}
