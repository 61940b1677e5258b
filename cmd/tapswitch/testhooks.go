//go:build tapswitch_testhooks

package main

import "time"

// A binary built with the tapswitch_testhooks tag, for the integration
// test of the shutdown watchdog, gives up on a stuck shutdown sooner: just
// after Serve has stopped waiting for requests in progress (5 s), so that
// what is stuck then is Close.
func init() { shutdownGrace = 6 * time.Second }
