package main

import (
	"bytes"
	"testing"

	"github.com/tapswitch/tapswitch/api"
)

// TestNATArgumentErrors: mistakes in the NAT flags and commands exit 2
// before anything talks to a daemon.
func TestNATArgumentErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"uplink kind", []string{"run", "--uplink", "vde"}, "--uplink: invalid uplink: \"vde\": the kind must be host, none or tap"},
		{"host uplink key", []string{"run", "--uplink", "host,ip=1.2.3.4"}, `unknown key "ip"`},
		{"host uplink addr", []string{"run", "--uplink", "host,addr=127.0.0.2"}, "addr=127.0.0.2: not a unicast host address"},
		{"host-loopback without host", []string{"run", "--uplink", "none", "--host-loopback"}, "--host-loopback needs the host uplink"},
		{"uplink without netns", []string{"run", "--uplink", "tap,ip=198.51.100.2/24"}, "netns=PATH is required"},
		{"uplink gw off link", []string{"run", "--uplink", "tap,netns=/x,ip=198.51.100.2/24,gw=203.0.113.1"}, "gw=203.0.113.1: not on the link"},
		{"ct-max", []string{"run", "--ct-max", "0"}, "--ct-max 0: must be at least 1"},
		{"ct timeout", []string{"run", "--ct-udp-timeout", "0s"}, "--ct-udp-timeout 0s: must be positive"},
		{"attach bad publish", []string{"attach", "--netns", "/x", "-p", "80"}, "-p: invalid published port \"80\""},
		{"attach bad range", []string{"attach", "--netns", "/x", "-p", "9000-9002:80-81"}, "differ in length"},
		{"attach bad proto", []string{"attach", "--netns", "/x", "-p", "80:80/sctp"}, "not tcp or udp"},
		{"publish without to", []string{"publish", "80:80"}, "--to NAME is required"},
		{"publish without spec", []string{"publish", "--to", "c1"}, "give one published port"},
		{"publish bad spec", []string{"publish", "0:80", "--to", "c1"}, "not a port number"},
		{"unpublish nothing", []string{"unpublish"}, "give one host port"},
		{"unpublish bad port", []string{"unpublish", "http"}, `"http": not a host port`},
		{"unpublish bad proto", []string{"unpublish", "80/icmp"}, "the protocol must be tcp or udp"},
		{"conntrack flush and stats", []string{"conntrack", "--flush", "--stats"}, "do not go together"},
		{"conntrack extra", []string{"conntrack", "x"}, `unexpected argument "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantExit(t, tt.args, 2, tt.want) })
	}
}

func TestPrintConntrack(t *testing.T) {
	var b bytes.Buffer
	printConntrack(&b, []api.ConntrackEntry{
		{Proto: "tcp", State: "ESTABLISHED", Timeout: 7439.6,
			Orig:        api.Tuple{Src: "10.90.0.2", Dst: "198.51.100.1", Sport: 40000, Dport: 80},
			Reply:       api.Tuple{Src: "198.51.100.1", Dst: "198.51.100.2", Sport: 80, Dport: 40000},
			OrigPackets: 3, OrigBytes: 180, ReplyPackets: 2, ReplyBytes: 120},
		{Proto: "icmp", State: "REPLIED", Timeout: 59,
			Orig:  api.Tuple{Src: "10.90.0.2", Dst: "198.51.100.1", Sport: 7},
			Reply: api.Tuple{Src: "198.51.100.1", Dst: "198.51.100.2", Dport: 7}},
		{Proto: "udp", State: "UNREPLIED", Timeout: 29,
			Orig:  api.Tuple{Src: "10.90.0.2", Dst: "198.51.100.1", Sport: 5000, Dport: 53},
			Reply: api.Tuple{Src: "198.51.100.1", Dst: "198.51.100.2", Sport: 53, Dport: 5000}},
	})
	want := `tcp      6 7439 ESTABLISHED src=10.90.0.2 dst=198.51.100.1 sport=40000 dport=80 packets=3 bytes=180 src=198.51.100.1 dst=198.51.100.2 sport=80 dport=40000 packets=2 bytes=120
icmp     1 59 src=10.90.0.2 dst=198.51.100.1 id=7 packets=0 bytes=0 src=198.51.100.1 dst=198.51.100.2 id=7 packets=0 bytes=0
udp      17 29 UNREPLIED src=10.90.0.2 dst=198.51.100.1 sport=5000 dport=53 packets=0 bytes=0 src=198.51.100.1 dst=198.51.100.2 sport=53 dport=5000 packets=0 bytes=0
3 flow entries have been shown.
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
