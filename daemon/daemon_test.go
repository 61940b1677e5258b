package daemon

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/internal/testutil"
	"github.com/tapswitch/tapswitch/uplink/host"
)

func newTestDaemon(t *testing.T, cfg Config) *Daemon {
	t.Helper()
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// serveAPI serves d's control API over HTTP on the loopback until the test
// ends, and returns its base URL.
func serveAPI(t *testing.T, d *Daemon) string {
	t.Helper()
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// httpGet GETs url, failing the test if no response comes; the body is
// closed when the test ends.
func httpGet(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
		gw      string
	}{
		{"defaults", Config{}, "", "10.90.0.1"},
		{"explicit gateway", Config{Subnet: netip.MustParsePrefix("10.66.0.0/24"), Gateway: netip.MustParseAddr("10.66.0.254")}, "", "10.66.0.254"},
		{"ipv6 subnet", Config{Subnet: netip.MustParsePrefix("fd00::/64")}, "only IPv4", ""},
		{"host bits", Config{Subnet: netip.MustParsePrefix("10.66.0.5/24")}, "did you mean 10.66.0.0/24", ""},
		{"too small", Config{Subnet: netip.MustParsePrefix("10.66.0.0/31")}, "too small", ""},
		{"gateway outside", Config{Subnet: netip.MustParsePrefix("10.66.0.0/24"), Gateway: netip.MustParseAddr("10.67.0.1")}, "outside the subnet", ""},
		{"gateway is broadcast", Config{Subnet: netip.MustParsePrefix("10.66.0.0/24"), Gateway: netip.MustParseAddr("10.66.0.255")}, "broadcast", ""},
		{"bad mtu", Config{MTU: 20}, "mtu 20", ""},
		{"negative ageing", Config{FDBAgeing: -1}, "must not be negative", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if testutil.WantErr(t, cfg.fill(), ErrInvalid, tt.wantErr) {
				return
			}
			if cfg.Gateway.String() != tt.gw {
				t.Errorf("gateway: got %s, want %s", cfg.Gateway, tt.gw)
			}
		})
	}
}

func TestNextFree(t *testing.T) {
	d := newTestDaemon(t, Config{Subnet: netip.MustParsePrefix("10.66.0.0/29")}) // .1 gateway, .2-.6 hosts, .7 broadcast
	used := map[netip.Addr]string{}
	var got []string
	for {
		ip, err := d.nextFree(used)
		if err != nil {
			if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "no free address left in 10.66.0.0/29") {
				t.Fatalf("exhausted: got %v", err)
			}
			break
		}
		used[ip] = "x"
		got = append(got, ip.String())
	}
	if want := "10.66.0.2 10.66.0.3 10.66.0.4 10.66.0.5 10.66.0.6"; strings.Join(got, " ") != want {
		t.Errorf("allocated %v, want %s", got, want)
	}
	delete(used, netip.MustParseAddr("10.66.0.4"))
	if ip, _ := d.nextFree(used); ip.String() != "10.66.0.4" {
		t.Errorf("after release: got %s, want 10.66.0.4", ip)
	}
}

func TestMACFor(t *testing.T) {
	if got := macFor(netip.MustParseAddr("172.17.0.2")).String(); got != "02:42:ac:11:00:02" {
		t.Errorf("got %s, want Docker's 02:42:ac:11:00:02", got)
	}
}

// TestAPIErrors drives the control API with requests that fail before any
// TAP is created, so it needs no privileges.
func TestAPIErrors(t *testing.T) {
	url := serveAPI(t, newTestDaemon(t, Config{}))
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"malformed body", "POST", "/v1/ports", "{", 400, "request body"},
		{"unknown field", "POST", "/v1/ports", `{"netns":"/x","vlna":3}`, 400, `unknown field "vlna"`},
		{"trailing data", "POST", "/v1/ports", `{"netns":"/x"} xyz`, 400, "data after the JSON object"},
		{"second object", "POST", "/v1/ports", `{"netns":"/x"}{}`, 400, "data after the JSON object"},
		{"empty body", "POST", "/v1/ports", "", 400, "empty"},
		{"cut short", "POST", "/v1/ports", `{"netns":`, 400, "cut short"},
		{"wrong type", "POST", "/v1/ports", `{"netns":"/x","vlan":"ten"}`, 400, `field "vlan"`},
		{"oversized", "POST", "/v1/ports", `{"netns":"` + strings.Repeat("x", 70000) + `"}`, 400, "larger than 64 KiB"},
		{"oversized after the object", "POST", "/v1/publish", `{"spec":"80:80"}` + strings.Repeat(" ", 70000) + "x", 400, "larger than 64 KiB"},
		{"rule trailing data", "POST", "/v1/rules", `{"action":"drop"} ]`, 400, "data after the JSON object"},
		{"vxlan trailing data", "POST", "/v1/vxlan", `{"vni":42} ]`, 400, "data after the JSON object"},
		{"vxlan fdb trailing data", "POST", "/v1/vxlan/42/fdb", `{"mac":"02:00:00:00:00:01"} x`, 400, "data after the JSON object"},
		{"vxlan fdb bad vni", "DELETE", "/v1/vxlan/x/fdb/02:00:00:00:00:01", "", 400, `vni "x"`},
		{"neither netns nor pid", "POST", "/v1/ports", `{}`, 400, "a namespace path (--netns) or a pid (--pid) is required"},
		{"both", "POST", "/v1/ports", `{"netns":"/x","pid":1}`, 400, "not both"},
		{"bad name", "POST", "/v1/ports", `{"netns":"/x","name":"-x"}`, 400, `port name "-x"`},
		{"reserved name", "POST", "/v1/ports", `{"netns":"/x","name":"gateway"}`, 409, "reserved for the gateway"},
		{"tunnel name", "POST", "/v1/ports", `{"netns":"/x","name":"vxlan42"}`, 409, "reserved for VXLAN tunnels"},
		{"bad ifname", "POST", "/v1/ports", `{"netns":"/x","ifname":"0123456789abcdef"}`, 400, "0123456789abcdef"},
		{"ip outside", "POST", "/v1/ports", `{"netns":"/x","ip":"192.0.2.9"}`, 400, "outside the subnet"},
		{"ip network", "POST", "/v1/ports", `{"netns":"/x","ip":"10.90.0.0"}`, 400, "network address"},
		{"ip gateway", "POST", "/v1/ports", `{"netns":"/x","ip":"10.90.0.1"}`, 409, "the gateway's address"},
		{"ipv6", "POST", "/v1/ports", `{"netns":"/x","ip":"fd00::1"}`, 400, "not an IPv4 address"},
		{"mac malformed", "POST", "/v1/ports", `{"netns":"/x","mac":"02:42"}`, 400, "mac"},
		{"mac multicast", "POST", "/v1/ports", `{"netns":"/x","mac":"33:33:00:00:00:01"}`, 400, "multicast"},
		{"mac zero", "POST", "/v1/ports", `{"netns":"/x","mac":"00:00:00:00:00:00"}`, 400, "zero"},
		{"mac of the gateway", "POST", "/v1/ports", `{"netns":"/proc/self/ns/net","mac":"02:42:0a:5a:00:01"}`, 409, "taken by the gateway"},
		{"mtu", "POST", "/v1/ports", `{"netns":"/x","mtu":70000}`, 400, "mtu 70000"},
		{"namespace missing", "POST", "/v1/ports", `{"netns":"/nonexistent/ns"}`, 404, "/nonexistent/ns"},
		{"namespace a directory", "POST", "/v1/ports", `{"netns":"/","name":"root"}`, 400, "not a network namespace"},
		{"namespace a regular file", "POST", "/v1/ports", `{"netns":"/etc/hostname"}`, 400, "not a network namespace"},
		{"namespace not a network one", "POST", "/v1/ports", `{"netns":"/proc/self/ns/uts"}`, 400, "not a network namespace"},
		{"detach unknown", "DELETE", "/v1/ports/nope", "", 404, `no port named "nope"`},
		{"get unknown", "GET", "/v1/ports/nope", "", 404, `no port named "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, url+tt.path, strings.NewReader(tt.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tt.status || !strings.Contains(e.Message, tt.want) {
				t.Errorf("got %d %q, want %d and %q", resp.StatusCode, e.Message, tt.status, tt.want)
			}
		})
	}
}

func TestAPIListings(t *testing.T) {
	d := newTestDaemon(t, Config{})
	url := serveAPI(t, d)
	get := func(path string, v any) {
		t.Helper()
		resp := httpGet(t, url+path)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var ports []api.Port
	get("/v1/ports", &ports)
	if len(ports) != 1 || ports[0].Name != "gateway" || ports[0].IP != "10.90.0.1/16" || ports[0].MAC != "02:42:0a:5a:00:01" {
		t.Errorf("ports: got %+v, want the gateway alone", ports)
	}
	var fdb []api.FDBEntry
	get("/v1/fdb", &fdb)
	if len(fdb) != 1 || fdb[0].Port != "gateway" || !fdb[0].Static {
		t.Errorf("fdb: got %+v, want the gateway's static entry", fdb)
	}
	var info api.Info
	get("/v1/info", &info)
	if info.Subnet != "10.90.0.0/16" || info.Gateway != "10.90.0.1" || info.FDBAgeing != 300 {
		t.Errorf("info: got %+v", info)
	}
}

func TestHostUplink(t *testing.T) {
	t.Run("refused configs", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			cfg  Config
			want string
		}{
			{"addr in the subnet", Config{Uplink: &host.Config{Addr: netip.MustParseAddr("10.90.3.3")}}, "inside the containers' subnet"},
			{"loopback in the subnet", Config{Uplink: &host.Config{Loopback: netip.MustParseAddr("10.90.3.3")}}, "inside the containers' subnet"},
			{"mtu over the gateway's", Config{Uplink: &host.Config{MTU: 9000}}, "larger than the gateway's mtu 1500"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				cfg := tt.cfg
				cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
				d, err := New(cfg)
				if err == nil {
					d.Close()
				}
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, want an ErrInvalid containing %q", err, tt.want)
				}
			})
		}
	})
	d := newTestDaemon(t, Config{Uplink: &host.Config{HostLoopback: true}})
	if got, want := d.Info().Uplink, "host,addr=192.0.0.8,loopback=192.0.0.1,loopback6=64:ff9b::c000:1,mtu=1500 (host-loopback)"; got != want {
		t.Errorf("info uplink: got %q, want %q", got, want)
	}
	if p, _ := d.Port("gateway"); p.Offloads != "csum,tso4" {
		t.Errorf("gateway offloads: got %q, want csum,tso4 (the host uplink takes super-segments)", p.Offloads)
	}
	s := d.Stats()
	if s.HostUplink == nil || s.NAT == nil {
		t.Fatalf("stats without host_uplink or nat: %+v", s)
	}
	if s.Process.Goroutines == 0 || s.Process.OpenFDs <= 0 {
		t.Errorf("process stats: %+v", s.Process)
	}
	if _, err := d.Publish(api.PublishRequest{Spec: "8080:80", To: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("publish to no port: got %v, want ErrNotFound", err)
	}
}

func TestNextFreeIPRange(t *testing.T) {
	for _, tt := range []struct {
		rng  string
		want string // the addresses handed out, in order
		err  string // from New
	}{
		{rng: "10.66.1.0/30", want: "10.66.1.1 10.66.1.2 10.66.1.3"},
		{rng: "10.66.0.0/30", want: "10.66.0.2 10.66.0.3"}, // the gateway's range
		{rng: "10.67.0.0/24", err: "inside the subnet"},
		{rng: "10.66.1.1/24", err: "host bits set"},
	} {
		t.Run(tt.rng, func(t *testing.T) {
			cfg := Config{Subnet: netip.MustParsePrefix("10.66.0.0/16"), IPRange: netip.MustParsePrefix(tt.rng)}
			if tt.err != "" {
				if err := cfg.fill(); err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("fill: %v, want an error with %q", err, tt.err)
				}
				return
			}
			d := newTestDaemon(t, cfg)
			used := map[netip.Addr]string{}
			var got []string
			for {
				ip, err := d.nextFree(used)
				if err != nil {
					if !strings.Contains(err.Error(), "no free address left in "+tt.rng) {
						t.Fatalf("exhausted: %v", err)
					}
					break
				}
				used[ip] = "x"
				got = append(got, ip.String())
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("allocated %v, want %s", got, tt.want)
			}
		})
	}
}
