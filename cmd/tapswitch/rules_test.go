package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/tapswitch/tapswitch/api"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		args []string
		want api.Rule
	}{
		{[]string{"--port", "a", "--proto", "tcp", "--dport", "22", "drop"},
			api.Rule{Port: "a", Proto: 6, DPortLo: 22, DPortHi: 22, Action: "drop"}},
		{[]string{"--src-port", "a", "--dst-port", "b", "allow"},
			api.Rule{SrcPort: "a", DstPort: "b", Action: "allow"}},
		{[]string{"--vlan", "10", "--ethertype", "ipv4", "--src", "10.90.0.2", "--dst", "10.90.1.0/24", "--proto", "udp", "--sport", "1000-2000", "count"},
			api.Rule{VLAN: 10, EtherType: 0x0800, Src: "10.90.0.2/32", Dst: "10.90.1.0/24", Proto: 17, SPortLo: 1000, SPortHi: 2000, Action: "count"}},
		{[]string{"--port", "a", "mirror", "tap1"},
			api.Rule{Port: "a", Action: "mirror", MirrorTo: "tap1"}},
		{[]string{"drop", "--src-mac", "02:42:0a:5a:00:02", "--ethertype", "arp"},
			api.Rule{SrcMAC: "02:42:0a:5a:00:02", EtherType: 0x0806, Action: "drop"}},
	}
	for _, tt := range tests {
		got, _, err := parseRule(tt.args)
		if err != nil {
			t.Errorf("parseRule(%q): %v", tt.args, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseRule(%q):\n got %+v\nwant %+v", tt.args, got, tt.want)
		}
	}
}

func TestPrintRules(t *testing.T) {
	var b bytes.Buffer
	printRules(&b, []api.RuleStats{
		{Rule: api.Rule{ID: 1, Port: "a", Proto: 6, DPortLo: 22, DPortHi: 22, Action: "drop"}, Packets: 3, Bytes: 222},
		{Rule: api.Rule{ID: 7, Port: "a", Action: "mirror", MirrorTo: "m"}, Missing: []string{"m"}},
	})
	want := `ID  MATCH                      ACTION    PACKETS  BYTES  NOTE
1   port=a proto=tcp dport=22  drop      3        222    -
7   port=a                     mirror m  0        0      not attached: m
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPrintPipeline(t *testing.T) {
	var b bytes.Buffer
	printPipeline(&b, api.Pipeline{Mode: "learning", Isolate: true, Stages: []api.Stage{
		{Name: "parse", Doc: "reads the headers", Hits: 10},
		{Name: "acl", Doc: "rules and isolation", Hits: 9, Drops: 2},
	}})
	for _, want := range []string{"mode: learning", "inter-container communication: off", "1  parse  10    0      reads the headers", "2  acl    9     2      rules and isolation"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("pipeline output lacks %q:\n%s", want, b.String())
		}
	}
}
