package cni

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tapswitch/tapswitch/api"
)

// fakeDaemon answers the part of the control API the plugin uses, from
// memory, on a unix socket of the test's own.
type fakeDaemon struct {
	sock   string
	subnet string

	mu       sync.Mutex // guards what follows
	ports    []api.Port
	attaches []api.AttachRequest
	detaches []string
	// fail, when set, is the status and message of the next attach or
	// detach answer instead of doing it.
	failStatus int
	failMsg    string
	// unseen makes attach answer as a daemon that cannot see namespace
	// paths but a /proc/PID/fd/N (rootless podman's bind mounts).
	unseen bool
}

func newFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	f := &fakeDaemon{sock: filepath.Join(t.TempDir(), "ctl.sock"), subnet: "10.90.0.0/16"}
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f.handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *fakeDaemon) handler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	failed := func(w http.ResponseWriter) bool {
		if f.failStatus == 0 {
			return false
		}
		reply(w, f.failStatus, api.Error{Message: f.failMsg})
		f.failStatus = 0
		return true
	}
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, api.Info{Subnet: f.subnet, Gateway: "10.90.0.1", MTU: 1500, DNS: &api.DNSInfo{Nameserver: "10.90.0.1", Search: []string{"tapswitch"}}})
	})
	mux.HandleFunc("GET /v1/ports", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		reply(w, 200, append([]api.Port{{Name: "gateway", Kind: "gateway", MAC: "02:42:0a:5a:00:01", IP: "10.90.0.1/16"}}, f.ports...))
	})
	mux.HandleFunc("POST /v1/ports", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var req api.AttachRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			reply(w, 400, api.Error{Message: err.Error()})
			return
		}
		f.attaches = append(f.attaches, req)
		if failed(w) {
			return
		}
		if f.unseen && !strings.Contains(req.Netns, "/fd/") {
			reply(w, 404, api.Error{Message: "network namespace not found: " + req.Netns + " is not a network namespace"})
			return
		}
		ip := req.IP
		if ip == "" {
			ip = "10.90.0." + string(rune('2'+len(f.ports)))
		}
		p := api.Port{Name: req.Name, Kind: "tap", IfName: req.IfName, Netns: req.Netns, MAC: "02:42:0a:5a:00:02", IP: ip + "/16",
			MTU: 1500, Publish: req.Publish, ContainerID: req.ContainerID, Network: req.Network}
		if req.MAC != "" {
			p.MAC = req.MAC
		}
		f.ports = append(f.ports, p)
		reply(w, 201, p)
	})
	mux.HandleFunc("DELETE /v1/ports/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		name := r.PathValue("name")
		f.detaches = append(f.detaches, name)
		if failed(w) {
			return
		}
		n := len(f.ports)
		f.ports = slices.DeleteFunc(f.ports, func(p api.Port) bool { return p.Name == name })
		if len(f.ports) == n {
			reply(w, 404, api.Error{Message: "no port named " + name})
			return
		}
		w.WriteHeader(204)
	})
	return mux
}

func (f *fakeDaemon) fail(status int, msg string) {
	f.mu.Lock()
	f.failStatus, f.failMsg = status, msg
	f.mu.Unlock()
}

func (f *fakeDaemon) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n []string
	for _, p := range f.ports {
		n = append(n, p.Name)
	}
	return n
}

// call is one run of the plugin through the CNI library's skel, with a
// fake environment: the CNI_* variables, stdin and stdout of the test's
// own.
type call struct {
	cmd, containerID, netns, ifname, args string
	conf                                  string
}

// run runs c and returns what the plugin printed and its error.
func (c call) run(t *testing.T) (string, *types.Error) {
	t.Helper()
	env := map[string]string{
		"CNI_COMMAND": c.cmd, "CNI_CONTAINERID": c.containerID, "CNI_NETNS": c.netns,
		"CNI_IFNAME": c.ifname, "CNI_ARGS": c.args, "CNI_PATH": "/opt/cni/bin",
		// The namespaces are names only: skel must not open them.
		"CNI_NETNS_OVERRIDE": "1",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "stdin")
	if err := os.WriteFile(in, []byte(c.conf), 0o600); err != nil {
		t.Fatal(err)
	}
	stdin, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	oldIn, oldOut := os.Stdin, os.Stdout
	os.Stdin, os.Stdout = stdin, stdout
	e := skel.PluginMainFuncsWithError(Funcs(), Versions, "test")
	os.Stdin, os.Stdout = oldIn, oldOut
	if _, err := stdout.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(stdout)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), e
}

// conf is a network configuration for the plugin with runtimeConfig rc
// (JSON, "" for none) and more top-level fields (JSON, after a comma).
func conf(version, sock, rc, more string) string {
	s := `{"cniVersion":"` + version + `","name":"tsnet","type":"tapswitch","control":"` + sock + `"`
	if rc != "" {
		s += `,"runtimeConfig":` + rc
	}
	if more != "" {
		s += "," + more
	}
	return s + "}"
}

func add(sock, id, args, rc string) call {
	return call{cmd: "ADD", containerID: id, netns: "/run/netns/" + id, ifname: "eth0", args: args, conf: conf("1.0.0", sock, rc, "")}
}

func mustAdd(t *testing.T, c call) *current.Result {
	t.Helper()
	out, e := c.run(t)
	if e != nil {
		t.Fatalf("ADD: %v", e)
	}
	var r current.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("ADD printed %q: %v", out, err)
	}
	return &r
}

func TestVersion(t *testing.T) {
	out, e := call{cmd: "VERSION", conf: `{"cniVersion":"1.1.0"}`}.run(t)
	if e != nil {
		t.Fatal(e)
	}
	var v struct {
		Supported []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("VERSION printed %q: %v", out, err)
	}
	if want := []string{"0.4.0", "1.0.0", "1.1.0"}; !slices.Equal(v.Supported, want) {
		t.Errorf("supported versions = %v, want %v", v.Supported, want)
	}
}

func TestAdd(t *testing.T) {
	f := newFakeDaemon(t)
	rc := `{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},{"hostPort":8081,"containerPort":81,"protocol":"tcp"},{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}],"ips":["10.90.0.7/16"],"mac":"02:00:00:00:00:07"}`
	r := mustAdd(t, add(f.sock, "0123456789abcdef0123", "IgnoreUnknown=1;K8S_POD_NAME=web1", rc))
	if len(f.attaches) != 1 {
		t.Fatalf("attach requests = %d, want 1", len(f.attaches))
	}
	got := f.attaches[0]
	want := api.AttachRequest{Netns: "/run/netns/0123456789abcdef0123", Name: "web1", IfName: "eth0", IP: "10.90.0.7", MAC: "02:00:00:00:00:07",
		Publish: []string{"8080-8081:80-81/tcp", "127.0.0.1:5353:53/udp"}, ContainerID: "0123456789abcdef0123", Network: "tsnet"}
	if !jsonEqual(got, want) {
		t.Errorf("attach request = %+v, want %+v", got, want)
	}
	if len(r.Interfaces) != 1 || r.Interfaces[0].Name != "eth0" || r.Interfaces[0].Mac != "02:00:00:00:00:07" || r.Interfaces[0].Sandbox != want.Netns {
		t.Errorf("interfaces = %+v, want eth0 with the MAC in %s", r.Interfaces, want.Netns)
	}
	if len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.90.0.7/16" || r.IPs[0].Gateway.String() != "10.90.0.1" ||
		r.IPs[0].Interface == nil || *r.IPs[0].Interface != 0 {
		t.Errorf("ips = %+v, want 10.90.0.7/16 via 10.90.0.1 on interface 0", r.IPs)
	}
	if len(r.Routes) != 1 || r.Routes[0].Dst.String() != "0.0.0.0/0" || r.Routes[0].GW.String() != "10.90.0.1" {
		t.Errorf("routes = %+v, want default via 10.90.0.1", r.Routes)
	}
	if r.CNIVersion != "1.0.0" {
		t.Errorf("result version = %q, want the configuration's 1.0.0", r.CNIVersion)
	}
	if len(r.DNS.Nameservers) != 1 || r.DNS.Nameservers[0] != "10.90.0.1" || len(r.DNS.Search) != 1 || r.DNS.Search[0] != "tapswitch" {
		t.Errorf("dns = %+v, want nameserver 10.90.0.1, search tapswitch (the embedded server)", r.DNS)
	}

	// The same ADD again: the same result, no second attach.
	again := mustAdd(t, add(f.sock, "0123456789abcdef0123", "IgnoreUnknown=1;K8S_POD_NAME=web1", rc))
	if len(f.attaches) != 1 {
		t.Errorf("attach requests after a repeated ADD = %d, want 1", len(f.attaches))
	}
	if !jsonEqual(again, r) {
		t.Errorf("repeated ADD = %+v, want %+v", again, r)
	}
}

func TestAddNameAndArgs(t *testing.T) {
	tests := []struct {
		name, args, rc string
		wantName       string
		wantIP         string
		wantMAC        string
	}{
		{name: "short id", wantName: "0123456789ab"},
		{name: "pod name", args: "K8S_POD_NAME=db", wantName: "db"},
		{name: "pod name not a port name", args: "IgnoreUnknown=1;K8S_POD_NAME=a/b", wantName: "0123456789ab"},
		{name: "CNI_ARGS address", args: "IP=10.90.0.9;MAC=02:00:00:00:00:09", wantName: "0123456789ab", wantIP: "10.90.0.9", wantMAC: "02:00:00:00:00:09"},
		{name: "capability wins", args: "IP=10.90.0.9", rc: `{"ips":["10.90.0.10/16"]}`, wantName: "0123456789ab", wantIP: "10.90.0.10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeDaemon(t)
			mustAdd(t, add(f.sock, "0123456789abcdef", tt.args, tt.rc))
			got := f.attaches[0]
			if got.Name != tt.wantName || got.IP != tt.wantIP || got.MAC != tt.wantMAC {
				t.Errorf("name, ip, mac = %q, %q, %q, want %q, %q, %q", got.Name, got.IP, got.MAC, tt.wantName, tt.wantIP, tt.wantMAC)
			}
		})
	}
}

func TestAddVersions(t *testing.T) {
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			f := newFakeDaemon(t)
			c := add(f.sock, "c1", "", "")
			c.conf = conf(v, f.sock, "", "")
			out, e := c.run(t)
			if e != nil {
				t.Fatal(e)
			}
			var r struct {
				CNIVersion string `json:"cniVersion"`
				IPs        []struct {
					Address string `json:"address"`
				} `json:"ips"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatal(err)
			}
			if r.CNIVersion != v || len(r.IPs) != 1 || r.IPs[0].Address != "10.90.0.2/16" {
				t.Errorf("result = %s, want version %s with 10.90.0.2/16", out, v)
			}
		})
	}
}

func TestAddErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		msg        string
		noDaemon   bool
		rc, stdin  string
		args       string
		wantCode   uint
		wantInMsg  string
		noAttached bool
	}{
		{name: "daemon not running", noDaemon: true, wantCode: ErrDaemonUnreachable, wantInMsg: "daemon not running: no daemon answers on "},
		{name: "subnet full", status: 409, msg: "no free address left in 10.90.0.0/30", wantCode: ErrSubnetFull, wantInMsg: "subnet full"},
		{name: "host port in use", status: 409, msg: "publish 0.0.0.0:8080->10.90.0.2:80/tcp: host port already in use", wantCode: ErrHostPortInUse, wantInMsg: "host port in use"},
		{name: "address taken", status: 409, msg: "ip 10.90.0.7 is taken by port web2", wantCode: ErrTaken, wantInMsg: "is taken by port web2"},
		{name: "namespace gone", status: 404, msg: "network namespace /run/netns/x: not found", wantCode: types.ErrInvalidNetNS, wantInMsg: "not found"},
		{name: "bad request", status: 400, msg: "mtu 1: must be between", wantCode: types.ErrInvalidNetworkConfig, wantInMsg: "mtu 1"},
		{name: "daemon error", status: 500, msg: "boom", wantCode: types.ErrInternal, wantInMsg: "boom"},
		{name: "bad json", stdin: `{"cniVersion":"1.0.0","name":`, wantCode: types.ErrDecodingFailure},
		{name: "sctp", rc: `{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"sctp"}]}`, wantCode: types.ErrInvalidNetworkConfig, wantInMsg: "tcp or udp"},
		{name: "port 0", rc: `{"portMappings":[{"hostPort":0,"containerPort":80}]}`, wantCode: types.ErrInvalidNetworkConfig, wantInMsg: "1-65535"},
		{name: "IPv4-mapped host address", rc: `{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"::ffff:127.0.0.1"}]}`, wantCode: types.ErrInvalidNetworkConfig, wantInMsg: "not an IPv4 or IPv6 address"},
		{name: "host port twice", rc: `{"portMappings":[{"hostPort":80,"containerPort":80},{"hostPort":80,"containerPort":81,"hostIP":"127.0.0.1"}]}`, wantCode: types.ErrInvalidNetworkConfig, wantInMsg: "mapped twice"},
		{name: "bad ip", args: "IP=10.90.0", wantCode: types.ErrInvalidNetworkConfig, wantInMsg: "not an IPv4 address"},
		{name: "two ips", rc: `{"ips":["10.90.0.5/16","10.90.0.6/16"]}`, wantCode: types.ErrInvalidNetworkConfig, wantInMsg: "one IPv4 address"},
		{name: "unknown CNI_ARGS", args: "FOO=1", wantCode: types.ErrInvalidEnvironmentVariables, wantInMsg: "CNI_ARGS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeDaemon(t)
			sock := f.sock
			if tt.noDaemon {
				sock = filepath.Join(t.TempDir(), "none.sock")
			}
			if tt.status != 0 {
				f.fail(tt.status, tt.msg)
			}
			c := add(sock, "c1", tt.args, tt.rc)
			if tt.stdin != "" {
				c.conf = tt.stdin
			}
			out, e := c.run(t)
			if e == nil {
				t.Fatalf("ADD succeeded (%s), want error code %d", out, tt.wantCode)
			}
			t.Logf("error: %v", e)
			if e.Code != tt.wantCode {
				t.Errorf("code = %d, want %d (%v)", e.Code, tt.wantCode, e)
			}
			if !strings.Contains(e.Msg, tt.wantInMsg) {
				t.Errorf("msg = %q, want it to contain %q", e.Msg, tt.wantInMsg)
			}
			if tt.noDaemon && !strings.Contains(e.Msg, sock) {
				t.Errorf("msg = %q, want the socket path %s", e.Msg, sock)
			}
			if n := f.names(); len(n) != 0 {
				t.Errorf("ports after a failed ADD = %v, want none", n)
			}
			// The error is CNI's JSON (code, msg, details).
			var j map[string]any
			b, _ := json.Marshal(e)
			if err := json.Unmarshal(b, &j); err != nil || j["code"] == nil || j["msg"] == nil {
				t.Errorf("error JSON = %s", b)
			}
		})
	}
}

func TestDel(t *testing.T) {
	f := newFakeDaemon(t)
	rc := `{"portMappings":[{"hostPort":8080,"containerPort":80}]}`
	mustAdd(t, add(f.sock, "c1", "K8S_POD_NAME=web1", rc))
	mustAdd(t, add(f.sock, "c2", "K8S_POD_NAME=web2", ""))
	del := func(id string) call {
		c := add(f.sock, id, "K8S_POD_NAME=x", rc)
		c.cmd = "DEL"
		return c
	}
	if _, e := del("c1").run(t); e != nil {
		t.Fatal(e)
	}
	if got := f.names(); !slices.Equal(got, []string{"web2"}) {
		t.Errorf("ports after DEL of c1 = %v, want [web2]", got)
	}
	// Already gone, and a container never added: success, nothing detached.
	n := len(f.detaches)
	for _, id := range []string{"c1", "c9"} {
		if _, e := del(id).run(t); e != nil {
			t.Errorf("DEL of %s (no port) = %v, want success", id, e)
		}
	}
	if len(f.detaches) != n {
		t.Errorf("DEL of absent ports detached %v", f.detaches[n:])
	}
	// Without the namespace (CNI_NETNS empty, podman's cleanup after the
	// container died): found by container ID and interface.
	c := del("c2")
	c.netns = ""
	if _, e := c.run(t); e != nil {
		t.Errorf("DEL without CNI_NETNS = %v", e)
	}
	if got := f.names(); len(got) != 0 {
		t.Errorf("ports = %v, want none", got)
	}
	// The port vanished between the listing and the detach (404).
	mustAdd(t, add(f.sock, "c3", "", ""))
	f.fail(404, "no port named c3")
	if _, e := del("c3").run(t); e != nil {
		t.Errorf("DEL racing the port's end = %v, want success", e)
	}
	// A daemon error is one.
	mustAdd(t, add(f.sock, "c4", "", ""))
	f.fail(500, "boom")
	if _, e := del("c4").run(t); e == nil || !strings.Contains(e.Msg, "boom") {
		t.Errorf("DEL with the daemon failing = %v, want its error", e)
	}
	// No daemon: success (a stopped daemon removed every TAP it made).
	c = del("c4")
	c.conf = conf("1.0.0", filepath.Join(t.TempDir(), "none.sock"), "", "")
	if _, e := c.run(t); e != nil {
		t.Errorf("DEL without a daemon = %v, want success", e)
	}
}

func TestCheck(t *testing.T) {
	f := newFakeDaemon(t)
	r := mustAdd(t, add(f.sock, "c1", "", ""))
	prev, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(string(prev), "10.90.0.2/16", "10.90.0.99/16", 1)
	otherMAC := strings.Replace(string(prev), "02:42:0a:5a:00:02", "02:00:00:00:00:99", 1)
	tests := []struct {
		name, id, netns, prev string
		wantCode              uint
	}{
		{name: "ok", id: "c1", netns: "/run/netns/c1", prev: string(prev)},
		{name: "no port", id: "c2", netns: "/run/netns/c2", prev: string(prev), wantCode: types.ErrUnknownContainer},
		{name: "other namespace", id: "c1", netns: "/run/netns/c2", prev: string(prev), wantCode: types.ErrInvalidNetNS},
		{name: "other address", id: "c1", netns: "/run/netns/c1", prev: other, wantCode: types.ErrInvalidNetworkConfig},
		{name: "other MAC", id: "c1", netns: "/run/netns/c1", prev: otherMAC, wantCode: types.ErrInvalidNetworkConfig},
		{name: "no prevResult", id: "c1", netns: "/run/netns/c1", wantCode: types.ErrInvalidNetworkConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			more := ""
			if tt.prev != "" {
				more = `"prevResult":` + tt.prev
			}
			c := call{cmd: "CHECK", containerID: tt.id, netns: tt.netns, ifname: "eth0", conf: conf("1.0.0", f.sock, "", more)}
			_, e := c.run(t)
			switch {
			case tt.wantCode == 0 && e != nil:
				t.Errorf("CHECK = %v, want success", e)
			case tt.wantCode != 0 && (e == nil || e.Code != tt.wantCode):
				t.Errorf("CHECK = %v, want code %d", e, tt.wantCode)
			}
		})
	}
}

func TestGC(t *testing.T) {
	f := newFakeDaemon(t)
	for _, id := range []string{"keep", "drop1", "drop2"} {
		mustAdd(t, add(f.sock, id, "", ""))
	}
	// A port of another network and one attached by hand stay.
	f.ports = append(f.ports, api.Port{Name: "other", IfName: "eth0", IP: "10.90.0.20/16", ContainerID: "x", Network: "othernet"},
		api.Port{Name: "byhand", IfName: "eth0", IP: "10.90.0.21/16"})
	c := call{cmd: "GC", conf: conf("1.1.0", f.sock, "", `"cni.dev/valid-attachments":[{"containerID":"keep","ifname":"eth0"},{"containerID":"drop1","ifname":"eth1"}]`)}
	if _, e := c.run(t); e != nil {
		t.Fatal(e)
	}
	if got, want := f.names(), []string{"keep", "other", "byhand"}; !slices.Equal(got, want) {
		t.Errorf("ports after GC = %v, want %v", got, want)
	}
	c.conf = conf("1.1.0", filepath.Join(t.TempDir(), "none.sock"), "", "")
	if _, e := c.run(t); e == nil || e.Code != ErrDaemonUnreachable {
		t.Errorf("GC without a daemon = %v, want code %d", e, ErrDaemonUnreachable)
	}
	c.conf = conf("1.0.0", f.sock, "", "")
	if _, e := c.run(t); e == nil || e.Code != types.ErrIncompatibleCNIVersion {
		t.Errorf("GC with a 1.0.0 configuration = %v, want code %d", e, types.ErrIncompatibleCNIVersion)
	}
}

func TestStatus(t *testing.T) {
	f := newFakeDaemon(t)
	status := func(sock string) *types.Error {
		_, e := call{cmd: "STATUS", conf: conf("1.1.0", sock, "", "")}.run(t)
		return e
	}
	if e := status(f.sock); e != nil {
		t.Errorf("STATUS = %v, want success", e)
	}
	// A /30 has two host addresses: the gateway's and one container's.
	f.subnet = "10.90.0.0/30"
	f.ports = []api.Port{{Name: "c", IP: "10.90.0.2/30"}}
	if e := status(f.sock); e == nil || e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Msg, "full") {
		t.Errorf("STATUS with the subnet full = %v, want code 50 saying full", e)
	}
	none := filepath.Join(t.TempDir(), "none.sock")
	if e := status(none); e == nil || e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Msg, none) {
		t.Errorf("STATUS without a daemon = %v, want code 50 naming %s", e, none)
	}
}

func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// TestAddByFD: a daemon that cannot see the namespace's path (rootless
// podman's bind mount) gets the plugin's /proc/PID/fd/N of it instead; the
// result still names the runtime's path.
func TestAddByFD(t *testing.T) {
	f := newFakeDaemon(t)
	f.unseen = true
	c := add(f.sock, "c1", "", "")
	c.netns = "/proc/self/ns/net" // a network namespace the test may open
	r := mustAdd(t, c)
	if len(f.attaches) != 2 {
		t.Fatalf("attach requests = %d, want 2 (the path, then the fd)", len(f.attaches))
	}
	if got, prefix := f.attaches[1].Netns, "/proc/"+strconv.Itoa(os.Getpid())+"/fd/"; !strings.HasPrefix(got, prefix) {
		t.Errorf("second attach's netns = %q, want %sN", got, prefix)
	}
	if got := r.Interfaces[0].Sandbox; got != "/proc/self/ns/net" {
		t.Errorf("sandbox = %q, want the runtime's path", got)
	}
	// CHECK cannot compare the fd's path: it checks the rest.
	prev, _ := json.Marshal(r)
	chk := call{cmd: "CHECK", containerID: "c1", netns: "/proc/self/ns/net", ifname: "eth0", conf: conf("1.0.0", f.sock, "", `"prevResult":`+string(prev))}
	if _, e := chk.run(t); e != nil {
		t.Errorf("CHECK of a port attached by fd: %v", e)
	}

	// A path that is no namespace for the plugin either keeps the error.
	f2 := newFakeDaemon(t)
	f2.unseen = true
	notNS := filepath.Join(t.TempDir(), "netns-x")
	if err := os.WriteFile(notNS, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c = add(f2.sock, "c2", "", "")
	c.netns = notNS
	if _, e := c.run(t); e == nil || e.Code != types.ErrInvalidNetNS || !strings.Contains(e.Msg, "not a network namespace") {
		t.Errorf("ADD of a file that is no namespace = %v, want code %d", e, types.ErrInvalidNetNS)
	}
	if n := f2.names(); len(n) != 0 {
		t.Errorf("ports = %v, want none", n)
	}
}

// TestResultDNSOff: a daemon run with --dns=false gives no nameserver, so
// the runtime keeps the host's resolvers.
func TestResultDNSOff(t *testing.T) {
	if got := resultDNS(api.Info{Gateway: "10.90.0.1"}); len(got.Nameservers) != 0 || len(got.Search) != 0 {
		t.Errorf("resultDNS without a DNS server = %+v, want empty", got)
	}
}

// TestResultDNSIPv6: a daemon run with --ipv6 gives both of the server's
// addresses, the IPv4 one first.
func TestResultDNSIPv6(t *testing.T) {
	got := resultDNS(api.Info{DNS: &api.DNSInfo{Nameserver: "10.90.0.1", Nameserver6: "fd42:1::1", Search: []string{"tapswitch"}}})
	if strings.Join(got.Nameservers, " ") != "10.90.0.1 fd42:1::1" || strings.Join(got.Search, " ") != "tapswitch" {
		t.Errorf("resultDNS with IPv6 = %+v, want both nameservers and the search domain", got)
	}
}
