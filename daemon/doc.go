// Package daemon implements the tapswitch daemon: it owns the switch, the
// gateway port and the TAP ports of attached containers, allocates their
// addresses, and serves the control API of package api.
package daemon
