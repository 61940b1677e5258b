package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/cni"
	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// The CNI tests run the plugin the way cnitool and nerdctl do: through the
// CNI library's libcni, with a network configuration list of the test's
// own whose "control" is the test daemon's socket.

var (
	pluginOnce sync.Once
	pluginDir  string
	pluginErr  error
)

// cniPluginDir builds the plugin (cmd/tapswitch-cni) once, as "tapswitch"
// in a directory beside the test's tapswitch binary, and returns the
// directory: the runtime's CNI_PATH.
func cniPluginDir(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		pluginDir = filepath.Join(filepath.Dir(bin), "cni")
		out, err := exec.Command("go", "build", "-buildvcs=false", "-o", filepath.Join(pluginDir, "tapswitch"), "../cmd/tapswitch-cni").CombinedOutput()
		if err != nil {
			pluginErr = fmt.Errorf("build the CNI plugin: %v: %s", err, out)
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	return pluginDir
}

// cniNet is a CNI network on a test daemon, driven through libcni.
type cniNet struct {
	cfg  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	d    *daemon
}

// startCNI starts a daemon (as root) with args and returns it with the
// network of newCNINet on it.
func startCNI(t *testing.T, args ...string) (*daemon, *cniNet) {
	t.Helper()
	requireRoot(t)
	d := startDaemon(t, args...)
	return d, newCNINet(t, d)
}

// newCNINet returns the network "tsnet" (CNI version 1.1.0) on d, with the
// capabilities portMappings and ips.
func newCNINet(t *testing.T, d *daemon) *cniNet {
	t.Helper()
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"tsnet","plugins":[{"type":"tapswitch","control":%q,"capabilities":{"portMappings":true,"ips":true}}]}`, d.sock)
	list, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	return &cniNet{cfg: libcni.NewCNIConfigWithCacheDir([]string{cniPluginDir(t)}, t.TempDir(), nil), list: list, d: d}
}

// rt is the runtime configuration of container id in namespace ns (a
// name, or a path when it starts with /), as podman gives it.
func rt(id, ns string, caps map[string]any) *libcni.RuntimeConf {
	path := ns
	if !strings.HasPrefix(ns, "/") {
		path = netnsutil.Path(ns)
	}
	return &libcni.RuntimeConf{
		ContainerID:    id,
		NetNS:          path,
		IfName:         "eth0",
		Args:           [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", id}},
		CapabilityArgs: caps,
	}
}

// ctx bounds one call to the plugin: a minute.
func (n *cniNet) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (n *cniNet) add(t *testing.T, r *libcni.RuntimeConf) (*current.Result, error) {
	t.Helper()
	res, err := n.cfg.AddNetworkList(n.ctx(t), n.list, r)
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

func (n *cniNet) mustAdd(t *testing.T, r *libcni.RuntimeConf) *current.Result {
	t.Helper()
	res, err := n.add(t, r)
	if err != nil {
		t.Fatalf("ADD %s: %v", r.ContainerID, err)
	}
	return res
}

// addNew ADDs container id in a new namespace and returns its runtime
// configuration and the namespace.
func (n *cniNet) addNew(t *testing.T, id string) (*libcni.RuntimeConf, string) {
	t.Helper()
	ns := newNS(t)
	r := rt(id, ns, nil)
	n.mustAdd(t, r)
	return r, ns
}

func (n *cniNet) del(t *testing.T, r *libcni.RuntimeConf) error {
	t.Helper()
	return n.cfg.DelNetworkList(n.ctx(t), n.list, r)
}

func (n *cniNet) check(t *testing.T, r *libcni.RuntimeConf) error {
	t.Helper()
	return n.cfg.CheckNetworkList(n.ctx(t), n.list, r)
}

func (n *cniNet) status(t *testing.T) error {
	t.Helper()
	return n.cfg.GetStatusNetworkList(n.ctx(t), n.list)
}

// portNamed returns the daemon's port called name.
func (d *daemon) portNamed(t *testing.T, name string) (api.Port, bool) {
	t.Helper()
	for _, p := range d.ports(t) {
		if p.Name == name {
			return p, true
		}
	}
	return api.Port{}, false
}

// cniCode returns the code of a CNI error returned by libcni, 0 if none.
func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func portMappings(pm ...cni.PortMapping) map[string]any {
	return map[string]any{"portMappings": pm}
}

// TestCNI drives two containers through ADD, a repeated ADD, CHECK and DEL,
// with a published port range, and checks what the daemon and the
// namespaces hold at each step.
func TestCNI(t *testing.T) {
	requireRoot(t)
	d, host, _ := startHost(t, false)
	n := newCNINet(t, d)
	c1, c2 := newNS(t), newNS(t)
	// podman sends one entry per port of -p 18080-18082:80-82.
	var pms []cni.PortMapping
	for i := range 3 {
		pms = append(pms, cni.PortMapping{HostPort: 18080 + i, ContainerPort: 80 + i, Protocol: "tcp"})
	}
	r1 := rt("web1", c1, portMappings(pms...))
	res1 := n.mustAdd(t, r1)
	res2 := n.mustAdd(t, rt("web2", c2, map[string]any{"ips": []string{"10.90.0.50/16"}}))

	if len(res1.IPs) != 1 || res1.IPs[0].Gateway.String() != gatewayIP || res1.IPs[0].Interface == nil || *res1.IPs[0].Interface != 0 {
		t.Errorf("ADD web1 ips = %+v, want one address via %s on interface 0", res1.IPs, gatewayIP)
	}
	if len(res1.Interfaces) != 1 || res1.Interfaces[0].Sandbox != netnsutil.Path(c1) || res1.Interfaces[0].Name != "eth0" {
		t.Errorf("ADD web1 interfaces = %+v, want eth0 in %s", res1.Interfaces, netnsutil.Path(c1))
	}
	if got := res2.IPs[0].Address.String(); got != "10.90.0.50/16" {
		t.Errorf("ADD web2 with ips 10.90.0.50/16 got %s", got)
	}
	p1, ok := d.portNamed(t, "web1")
	if !ok {
		t.Fatalf("no port web1 after ADD: %v", d.ports(t))
	}
	if p1.ContainerID != "web1" || p1.Network != "tsnet" || strings.SplitN(p1.IP, "/", 2)[0] != res1.IPs[0].Address.IP.String() {
		t.Errorf("port web1 = %+v, want container web1 of tsnet with the result's address", p1)
	}
	if want := []string{"18080-18082:80-82/tcp"}; !slices.Equal(p1.Publish, want) {
		t.Errorf("web1 publishes %v, want %v (podman's three entries joined)", p1.Publish, want)
	}
	// The namespace's lo was down (a fresh ip netns): attach brought it up.
	if out, err := exec.Command("ip", "-n", c1, "-o", "link", "show", "lo").CombinedOutput(); err != nil || !strings.Contains(string(out), ",UP") {
		t.Errorf("lo in %s after ADD: %s %v, want UP", c1, out, err)
	}
	ping(t, c1, "10.90.0.50")
	ping(t, c2, res1.IPs[0].Address.IP.String())
	// Each port of the range reaches its own container port.
	for i := range 3 {
		tcpServer(t, c1, fmt.Sprintf("0.0.0.0:%d", 80+i))
		seenAs(t, host, fmt.Sprintf("127.0.0.1:%d", 18080+i))
	}

	// A repeated ADD returns the same result and attaches nothing more.
	before := len(d.ports(t))
	again := n.mustAdd(t, r1)
	if a, b := mustJSON(t, again), mustJSON(t, res1); a != b {
		t.Errorf("repeated ADD = %s, want %s", a, b)
	}
	if after := len(d.ports(t)); after != before {
		t.Errorf("ports after a repeated ADD = %d, want %d", after, before)
	}

	if err := n.check(t, r1); err != nil {
		t.Errorf("CHECK web1: %v", err)
	}

	// DEL removes the port, its publishes and their listeners; the
	// namespace lives on, without eth0.
	if err := n.del(t, r1); err != nil {
		t.Fatalf("DEL web1: %v", err)
	}
	if _, ok := d.portNamed(t, "web1"); ok {
		t.Errorf("port web1 still there after DEL")
	}
	if got := links(t, c1); slices.Contains(got, "eth0") {
		t.Errorf("links of %s after DEL = %v, want no eth0", c1, got)
	}
	if c, err := dialTCP(t, host, "127.0.0.1:18080", 2*time.Second); err == nil {
		c.Close()
		t.Errorf("127.0.0.1:18080 still accepts after DEL")
	}
	if err := n.check(t, r1); cniCode(err) != types.ErrUnknownContainer {
		t.Errorf("CHECK after DEL = %v, want code %d", err, types.ErrUnknownContainer)
	}
	// DEL again: nothing to do, success.
	if err := n.del(t, r1); err != nil {
		t.Errorf("second DEL web1: %v", err)
	}
}

// TestCNIDelGone: DEL succeeds after the namespace is gone (the daemon has
// already dropped the port, the kernel having deleted its TAP).
func TestCNIDelGone(t *testing.T) {
	d, n := startCNI(t)
	r, ns := n.addNew(t, "gone1")
	if err := netnsutil.Del(ns); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "port gone1 removed with its namespace", func() bool {
		_, ok := d.portNamed(t, "gone1")
		return !ok
	})
	if err := n.del(t, r); err != nil {
		t.Errorf("DEL after the namespace is gone: %v", err)
	}
	// podman's cleanup may give no namespace at all.
	r.NetNS = ""
	if err := n.del(t, r); err != nil {
		t.Errorf("DEL without a namespace: %v", err)
	}
}

// TestCNIGC: GC detaches this network's ports whose attachment is not
// valid, and leaves the valid one and a port attached by hand.
func TestCNIGC(t *testing.T) {
	d, n := startCNI(t)
	for _, id := range []string{"gc1", "gc2", "gc3"} {
		n.addNew(t, id)
	}
	d.attach(t, newNS(t), "byhand")
	err := n.cfg.GCNetworkList(n.ctx(t), n.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "gc2", IfName: "eth0"}}})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	var names []string
	for _, p := range d.ports(t) {
		names = append(names, p.Name)
	}
	if want := []string{"byhand", "gateway", "gc2"}; !slices.Equal(sorted(names), want) {
		t.Errorf("ports after GC = %v, want %v", names, want)
	}
	if err := n.status(t); err != nil {
		t.Errorf("STATUS: %v", err)
	}
}

// TestCNIDaemonStopped: with the daemon stopped (which removes every TAP
// it made), DEL succeeds, as the CNI spec asks of a DEL whose resources
// are gone; ADD and STATUS fail naming the socket.
func TestCNIDaemonStopped(t *testing.T) {
	d, n := startCNI(t)
	r, ns := n.addNew(t, "stop1")
	if err := d.stop(t); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	if got := links(t, ns); slices.Contains(got, "eth0") {
		t.Errorf("links after the daemon stopped = %v, want no eth0", got)
	}
	if err := n.del(t, r); err != nil {
		t.Errorf("DEL with the daemon stopped: %v", err)
	}
	_, err := n.add(t, rt("stop2", newNS(t), nil))
	if cniCode(err) != cni.ErrDaemonUnreachable || !strings.Contains(err.Error(), d.sock) {
		t.Errorf("ADD with the daemon stopped = %v, want code %d naming %s", err, cni.ErrDaemonUnreachable, d.sock)
	}
	if err := n.status(t); cniCode(err) != types.ErrPluginNotAvailable {
		t.Errorf("STATUS with the daemon stopped = %v, want code %d", err, types.ErrPluginNotAvailable)
	}
}

// TestCNIFailedAdd: an ADD that fails (a host port in use, an address
// taken, a namespace that does not exist) leaves no port, publish,
// listener or interface, and the DEL that runtimes send after it succeeds.
func TestCNIFailedAdd(t *testing.T) {
	requireRoot(t)
	d, host, _ := startHost(t, false)
	n := newCNINet(t, d)
	n.mustAdd(t, rt("taken", newNS(t), map[string]any{"ips": []string{"10.90.0.60/16"}}))
	// A program of the host holds 18090.
	var ln net.Listener
	inNS(t, host, func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:18090"); return err })
	defer ln.Close()
	tests := []struct {
		name     string
		ns       string
		caps     map[string]any
		wantCode uint
		wantMsg  string
	}{
		{name: "host port in use", caps: portMappings(cni.PortMapping{HostPort: 18089, ContainerPort: 80}, cni.PortMapping{HostPort: 18090, ContainerPort: 81}),
			wantCode: cni.ErrHostPortInUse, wantMsg: "18090"},
		{name: "address taken", caps: map[string]any{"ips": []string{"10.90.0.60/16"}}, wantCode: cni.ErrTaken, wantMsg: "10.90.0.60"},
		{name: "no namespace", ns: "/run/netns/tapswitch-none-" + fmt.Sprint(os.Getpid()), wantCode: types.ErrInvalidNetNS, wantMsg: "tapswitch-none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := tt.ns
			if ns == "" {
				ns = newNS(t)
			}
			r := rt("fail1", ns, tt.caps)
			_, err := n.add(t, r)
			t.Logf("ADD: %v", err)
			if cniCode(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("ADD = %v, want code %d naming %s", err, tt.wantCode, tt.wantMsg)
			}
			if _, ok := d.portNamed(t, "fail1"); ok {
				t.Errorf("port fail1 left by a failed ADD")
			}
			if pubs := cliJSON[[]api.Published](t, d, "publish", "--list", "--json"); len(pubs) != 0 {
				t.Errorf("publishes left by a failed ADD: %+v", pubs)
			}
			if c, err := dialTCP(t, host, "127.0.0.1:18089", 2*time.Second); err == nil {
				c.Close()
				t.Errorf("127.0.0.1:18089 accepts after a failed ADD")
			}
			if tt.ns == "" {
				if got := links(t, ns); slices.Contains(got, "eth0") {
					t.Errorf("links after a failed ADD = %v, want no eth0", got)
				}
			}
			// podman follows a failed ADD with a DEL without prevResult.
			if err := n.del(t, r); err != nil {
				t.Errorf("DEL after a failed ADD: %v", err)
			}
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCNISubnetFull: with the daemon's /30 taken by the gateway and one
// container, ADD fails saying the subnet is full (leaving nothing) and so
// does STATUS; after a DEL both succeed again.
func TestCNISubnetFull(t *testing.T) {
	_, n := startCNI(t, "--subnet", "10.99.0.0/30")
	r1, _ := n.addNew(t, "full1")
	ns2 := newNS(t)
	_, err := n.add(t, rt("full2", ns2, nil))
	if cniCode(err) != cni.ErrSubnetFull || !strings.Contains(err.Error(), "subnet full") {
		t.Errorf("ADD into a full subnet = %v, want code %d saying subnet full", err, cni.ErrSubnetFull)
	}
	if got := links(t, ns2); slices.Contains(got, "eth0") {
		t.Errorf("links after the failed ADD = %v, want no eth0", got)
	}
	if err := n.status(t); cniCode(err) != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), "full") {
		t.Errorf("STATUS with the subnet full = %v, want code %d saying full", err, types.ErrPluginNotAvailable)
	}
	if err := n.del(t, r1); err != nil {
		t.Fatal(err)
	}
	if err := n.status(t); err != nil {
		t.Errorf("STATUS after DEL: %v", err)
	}
	n.mustAdd(t, rt("full2", ns2, nil))
}
