package daemon

// The uplink kinds the daemon knows: importing a kind's package registers
// it with package uplink (uplink.Register), under the name that starts its
// `--uplink` spec. A new kind is one package and one line here.
import (
	_ "github.com/tapswitch/tapswitch/uplink/host"
	_ "github.com/tapswitch/tapswitch/uplink/tap"
)
