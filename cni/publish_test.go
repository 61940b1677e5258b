package cni

import (
	"slices"
	"testing"

	"github.com/tapswitch/tapswitch/nat"
)

func TestPublishSpecs(t *testing.T) {
	tests := []struct {
		name string
		in   []PortMapping
		want []string
	}{
		{name: "none"},
		{name: "one", in: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}, want: []string{"8080:80/tcp"}},
		{name: "default tcp, upper case udp", in: []PortMapping{{HostPort: 53, ContainerPort: 53, Protocol: "UDP"}, {HostPort: 80, ContainerPort: 80}},
			want: []string{"80:80/tcp", "53:53/udp"}},
		{name: "podman's range, out of order", in: []PortMapping{{HostPort: 8002, ContainerPort: 82}, {HostPort: 8000, ContainerPort: 80}, {HostPort: 8001, ContainerPort: 81}},
			want: []string{"8000-8002:80-82/tcp"}},
		{name: "host ports follow, container ports do not", in: []PortMapping{{HostPort: 8000, ContainerPort: 80}, {HostPort: 8001, ContainerPort: 90}},
			want: []string{"8000:80/tcp", "8001:90/tcp"}},
		{name: "same ports, two protocols", in: []PortMapping{{HostPort: 9000, ContainerPort: 9000, Protocol: "udp"}, {HostPort: 9000, ContainerPort: 9000, Protocol: "tcp"},
			{HostPort: 9001, ContainerPort: 9001, Protocol: "udp"}}, want: []string{"9000:9000/tcp", "9000-9001:9000-9001/udp"}},
		{name: "host addresses", in: []PortMapping{{HostPort: 80, ContainerPort: 80, HostIP: "127.0.0.1"}, {HostPort: 81, ContainerPort: 81, HostIP: "0.0.0.0"},
			{HostPort: 82, ContainerPort: 82}}, want: []string{"81-82:81-82/tcp", "127.0.0.1:80:80/tcp"}},
		{name: "IPv6 host addresses", in: []PortMapping{{HostPort: 80, ContainerPort: 80, HostIP: "::1"}, {HostPort: 81, ContainerPort: 81, HostIP: "::1"},
			{HostPort: 82, ContainerPort: 82, HostIP: "::"}}, want: []string{"82:82/tcp", "[::1]:80-81:80-81/tcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := publishSpecs(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("publishSpecs = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzPublishSpecs checks that the joined specs parse as the daemon parses
// them and cover exactly the host ports of the mappings, each to its own
// container port.
func FuzzPublishSpecs(f *testing.F) {
	f.Add(uint16(8000), uint16(80), uint8(3), true, uint16(8003), uint16(90))
	f.Add(uint16(65534), uint16(65534), uint8(2), false, uint16(1), uint16(1))
	// Found by the fuzzer: a host port mapped twice was joined into two
	// overlapping specs; it is refused now.
	f.Add(uint16(7978), uint16(160), uint8(6), false, uint16(7980), uint16(127))
	f.Fuzz(func(t *testing.T, host, cont uint16, n uint8, udp bool, host2, cont2 uint16) {
		var in []PortMapping
		for i := range int(n % 8) {
			h, c := int(host)+i, int(cont)+i
			if h > 65535 || c > 65535 {
				break
			}
			in = append(in, PortMapping{HostPort: h, ContainerPort: c})
		}
		proto := "tcp"
		if udp {
			proto = "udp"
		}
		in = append(in, PortMapping{HostPort: int(host2), ContainerPort: int(cont2), Protocol: proto})
		specs, err := publishSpecs(in)
		if host == 0 || cont == 0 || host2 == 0 || cont2 == 0 {
			if err == nil && (host2 == 0 || cont2 == 0) {
				t.Fatalf("publishSpecs(%v) accepted port 0: %v", in, specs)
			}
			return
		}
		want := map[[2]int]int{} // (proto, host port) -> container port
		dup := false
		for _, m := range in {
			p := 0
			if m.Protocol == "udp" {
				p = 1
			}
			k := [2]int{p, m.HostPort}
			if _, ok := want[k]; ok {
				dup = true
			}
			want[k] = m.ContainerPort
		}
		if dup {
			if err == nil {
				t.Fatalf("publishSpecs(%v) accepted a host port mapped twice: %q", in, specs)
			}
			return
		}
		if err != nil {
			t.Fatalf("publishSpecs(%v): %v", in, err)
		}
		got := map[[2]int]int{}
		for _, s := range specs {
			pub, err := nat.ParsePublish(s)
			if err != nil {
				t.Fatalf("spec %q from %v does not parse: %v", s, in, err)
			}
			p := 0
			if pub.Proto == nat.UDP {
				p = 1
			}
			for hp := int(pub.HostPort); hp <= int(pub.HostPortEnd); hp++ {
				k := [2]int{p, hp}
				if _, dup := got[k]; dup {
					t.Fatalf("host port %d/%d in two specs of %q", hp, p, specs)
				}
				got[k] = int(pub.TargetPort) + hp - int(pub.HostPort)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("specs %q cover %d ports, mappings %d (%v)", specs, len(got), len(want), in)
		}
		for k, c := range want {
			if got[k] != c {
				t.Fatalf("host port %v -> %d in %q, want %d", k, got[k], specs, c)
			}
		}
	})
}
