package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// tcpCC is the TCP congestion control set in every namespace the bench
// makes (-cc, $TCP_CC); "" leaves the one they inherit, the machine's.
var tcpCC string

// checkCC reports an error unless cc is "" or a congestion control the
// kernel has (net.ipv4.tcp_available_congestion_control).
func checkCC(cc string) error {
	if cc == "" {
		return nil
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err != nil {
		return fmt.Errorf("-cc %s: %w", cc, err)
	}
	if have := strings.Fields(string(b)); !slices.Contains(have, cc) {
		return fmt.Errorf("-cc %s: the kernel has %s (modprobe tcp_%s for another)", cc, strings.Join(have, ", "), cc)
	}
	return nil
}

// congestionControl is the congestion control the TCP rows run with: -cc,
// or the machine's, which a new namespace inherits.
func congestionControl() string {
	if tcpCC != "" {
		return tcpCC
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
