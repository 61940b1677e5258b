// Command tapswitch-cni is tapswitch's CNI plugin, installed as "tapswitch"
// in the runtime's CNI plugin directory (/opt/cni/bin). Runtimes run it
// with the CNI environment and a network configuration on stdin, e.g.
//
//	{"cniVersion": "1.0.0", "name": "tsnet", "plugins": [{"type": "tapswitch",
//	 "control": "/run/tapswitch/tapswitch.sock", "capabilities": {"portMappings": true}}]}
//
// It asks the daemon behind "control" for a port in the container's
// namespace (package cni).
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/tapswitch/tapswitch/api"
	"github.com/tapswitch/tapswitch/cni"
)

func main() {
	skel.PluginMainFuncs(cni.Funcs(), cni.Versions, "CNI plugin tapswitch v"+api.Version)
}
