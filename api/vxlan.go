package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/tapswitch/tapswitch/internal/options"
)

// VXLANSpec describes a VXLAN tunnel of the switch: `--vxlan` and
// `tapswitch vxlan add` give it as
// vni=N,local=ADDR,remote=ADDR[,remote=ADDR...][,port=4789][,mtu=N][,vlan=N][,suppress=on|off].
type VXLANSpec struct {
	VNI     uint32   `json:"vni"`
	Local   string   `json:"local"`
	Remotes []string `json:"remotes"`
	// Port is the UDP port of every VTEP; 0 means 4789.
	Port uint16 `json:"port,omitempty"`
	// MTU is the underlay MTU; 0 means the MTU of the interface that holds
	// Local.
	MTU int `json:"mtu,omitempty"`
	// VLAN is the switch VLAN the VNI is mapped to; 0 means the default
	// VLAN. Several tunnels need one VLAN each.
	VLAN uint16 `json:"vlan,omitempty"`
	// Suppress is "on" or "off": whether the switch answers ARP requests
	// and neighbour solicitations for addresses it knows instead of
	// replicating them to every remote VTEP; "" means
	// DefaultVXLANSuppress.
	Suppress string `json:"suppress,omitempty"`
}

// DefaultVXLANSuppress is what a VXLANSpec without suppress= gets.
const DefaultVXLANSuppress = "on"

// SuppressOn reports whether v has ARP and ND suppression on.
func (v VXLANSpec) SuppressOn() bool {
	if v.Suppress == "" {
		return DefaultVXLANSuppress == "on"
	}
	return v.Suppress == "on"
}

// ErrBadVXLAN is wrapped by ParseVXLAN's errors.
var ErrBadVXLAN = errors.New("bad vxlan spec")

// ParseVXLAN reads a VXLAN spec (see VXLANSpec) and checks its values.
func ParseVXLAN(s string) (VXLANSpec, error) {
	var v VXLANSpec
	var seenVNI bool
	// remote= may repeat: take those out before the key=value reader,
	// which refuses repeated keys.
	var rest []string
	for _, it := range strings.Split(s, ",") {
		if r, ok := strings.CutPrefix(it, "remote="); ok {
			v.Remotes = append(v.Remotes, r)
			continue
		}
		rest = append(rest, it)
	}
	// num reads a decimal number of bits bits that check accepts.
	num := func(bits int, check func(uint64) error, set func(uint64)) func(string) error {
		return func(val string) error {
			n, err := strconv.ParseUint(val, 10, bits)
			if err != nil {
				return fmt.Errorf("not a number of %d bits", bits)
			}
			if err := check(n); err != nil {
				return err
			}
			set(n)
			return nil
		}
	}
	accept := func(uint64) error { return nil }
	err := options.Fields(rest, ErrBadVXLAN,
		options.Field{Key: "vni", Set: num(24, accept, func(n uint64) { v.VNI, seenVNI = uint32(n), true })},
		options.Field{Key: "local", Set: options.String(&v.Local)},
		options.Field{Key: "port", Set: num(16, func(n uint64) error {
			if n == 0 {
				return errors.New("port 0")
			}
			return nil
		}, func(n uint64) { v.Port = uint16(n) })},
		options.Field{Key: "mtu", Set: num(16, accept, func(n uint64) { v.MTU = int(n) })},
		options.Field{Key: "vlan", Set: num(12, func(n uint64) error { return ValidVLAN(int(n)) }, func(n uint64) { v.VLAN = uint16(n) })},
		options.Field{Key: "suppress", Set: options.String(&v.Suppress)},
	)
	if err != nil {
		return VXLANSpec{}, err
	}
	if !seenVNI {
		return VXLANSpec{}, fmt.Errorf("%w: %q: vni= is required", ErrBadVXLAN, s)
	}
	if err := v.Check(); err != nil {
		return VXLANSpec{}, err
	}
	return v, nil
}

// Check checks the addresses of v: local and every remote must be unicast
// addresses of one family.
func (v VXLANSpec) Check() error {
	if v.VNI > 1<<24-1 {
		return fmt.Errorf("%w: vni %d above 16777215", ErrBadVXLAN, v.VNI)
	}
	local, err := netip.ParseAddr(v.Local)
	if err != nil {
		return fmt.Errorf("%w: local=%q: not an IP address", ErrBadVXLAN, v.Local)
	}
	if len(v.Remotes) == 0 {
		return fmt.Errorf("%w: at least one remote= is required", ErrBadVXLAN)
	}
	for _, r := range v.Remotes {
		a, err := netip.ParseAddr(r)
		if err != nil {
			return fmt.Errorf("%w: remote=%q: not an IP address", ErrBadVXLAN, r)
		}
		if a.Is4() != local.Is4() {
			return fmt.Errorf("%w: remote %s and local %s are of different families", ErrBadVXLAN, a, local)
		}
	}
	if v.MTU != 0 && v.MTU < 576 {
		return fmt.Errorf("%w: mtu %d below 576", ErrBadVXLAN, v.MTU)
	}
	if v.Suppress != "" && v.Suppress != "on" && v.Suppress != "off" {
		return fmt.Errorf("%w: suppress=%q: on or off", ErrBadVXLAN, v.Suppress)
	}
	return nil
}

// String formats v as ParseVXLAN reads it.
func (v VXLANSpec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vni=%d,local=%s", v.VNI, v.Local)
	for _, r := range v.Remotes {
		b.WriteString(",remote=" + r)
	}
	if v.Port != 0 {
		fmt.Fprintf(&b, ",port=%d", v.Port)
	}
	if v.MTU != 0 {
		fmt.Fprintf(&b, ",mtu=%d", v.MTU)
	}
	if v.VLAN != 0 {
		fmt.Fprintf(&b, ",vlan=%d", v.VLAN)
	}
	if v.Suppress != "" {
		b.WriteString(",suppress=" + v.Suppress)
	}
	return b.String()
}

// VXLAN describes a running tunnel, for `tapswitch vxlan list`.
type VXLAN struct {
	Name string    `json:"name"`
	Spec VXLANSpec `json:"spec"`
	// Port is the UDP port in use (4789 unless the spec says otherwise).
	Port uint16 `json:"port"`
	VLAN uint16 `json:"vlan"`
	// MTU is the underlay MTU; InnerMTU the largest IP packet a container
	// can send across.
	MTU      int         `json:"mtu"`
	InnerMTU int         `json:"inner_mtu"`
	Allow    []string    `json:"allow,omitempty"`
	Stats    VXLANStats  `json:"stats"`
	VTEPs    []VTEPStats `json:"vteps"`
}

// VXLANStats are a tunnel's drop counters and MAC table (vxlan.Stats).
type VXLANStats struct {
	RxMalformed  uint64 `json:"rx_malformed"`
	RxBadVNI     uint64 `json:"rx_bad_vni"`
	RxDenied     uint64 `json:"rx_denied"`
	RxClaimed    uint64 `json:"rx_claimed"`
	RxNoVTEP     uint64 `json:"rx_no_vtep"`
	TxTooBig     uint64 `json:"tx_too_big"`
	TxGateway    uint64 `json:"tx_gateway"`
	TxErrors     uint64 `json:"tx_errors"`
	MACs         int    `json:"macs"`
	MACsLearned  uint64 `json:"macs_learned"`
	MACsMoved    uint64 `json:"macs_moved"`
	MACTableFull uint64 `json:"mac_table_full"`
	// Suppress says whether ARP and ND suppression is on; ARPSuppressed
	// and NDSuppressed count the requests answered instead of sent
	// through the tunnel, Neighs the addresses learned behind it.
	Suppress       bool   `json:"suppress"`
	ARPSuppressed  uint64 `json:"arp_suppressed"`
	NDSuppressed   uint64 `json:"nd_suppressed"`
	Neighs         int    `json:"neighs"`
	NeighsLearned  uint64 `json:"neighs_learned"`
	NeighsMoved    uint64 `json:"neighs_moved"`
	NeighTableFull uint64 `json:"neigh_table_full"`
}

// VTEPStats are the counters of one remote VTEP of a tunnel.
type VTEPStats struct {
	Addr      string `json:"addr"`
	Remote    bool   `json:"remote"` // configured (flooded to), not only learned
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxDropped uint64 `json:"tx_dropped"`
}

// VXLANNeigh is an address learned behind a tunnel, one the switch answers
// ARP requests or neighbour solicitations for (suppression).
type VXLANNeigh struct {
	IP  string  `json:"ip"`
	MAC string  `json:"mac"`
	Age float64 `json:"age_seconds"` // since the last ARP or ND message that confirmed it
}

// VXLANNeighs lists the addresses learned behind the tunnel of vni.
func (c *Client) VXLANNeighs(ctx context.Context, vni uint32) ([]VXLANNeigh, error) {
	return call[[]VXLANNeigh](ctx, c, http.MethodGet, "/v1/vxlan/"+strconv.FormatUint(uint64(vni), 10)+"/neigh", nil)
}

// VXLANs lists the tunnels.
func (c *Client) VXLANs(ctx context.Context) ([]VXLAN, error) {
	return call[[]VXLAN](ctx, c, http.MethodGet, "/v1/vxlan", nil)
}

// AddVXLAN adds a tunnel.
func (c *Client) AddVXLAN(ctx context.Context, spec VXLANSpec) (VXLAN, error) {
	return call[VXLAN](ctx, c, http.MethodPost, "/v1/vxlan", spec)
}

// DeleteVXLAN removes the tunnel of vni.
func (c *Client) DeleteVXLAN(ctx context.Context, vni uint32) error {
	return c.do(ctx, http.MethodDelete, "/v1/vxlan/"+strconv.FormatUint(uint64(vni), 10), nil, nil)
}

// VXLANStatic pins a MAC behind a remote VTEP of a tunnel, as `bridge fdb
// append MAC dev vxlan42 dst VTEP` does: the MAC never ages and is never
// learned elsewhere.
type VXLANStatic struct {
	MAC  string `json:"mac"`
	VTEP string `json:"vtep"`
}

// AddVXLANStatic pins s.MAC behind s.VTEP on the tunnel of vni.
func (c *Client) AddVXLANStatic(ctx context.Context, vni uint32, s VXLANStatic) error {
	return c.do(ctx, http.MethodPost, "/v1/vxlan/"+strconv.FormatUint(uint64(vni), 10)+"/fdb", s, nil)
}

// DeleteVXLANStatic removes the entry of mac from the tunnel of vni.
func (c *Client) DeleteVXLANStatic(ctx context.Context, vni uint32, mac string) error {
	return c.do(ctx, http.MethodDelete, "/v1/vxlan/"+strconv.FormatUint(uint64(vni), 10)+"/fdb/"+url.PathEscape(mac), nil, nil)
}
