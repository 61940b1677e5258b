package main

import (
	"fmt"
	"net"
	"os"
)

// notifyReady tells systemd (a Type=notify unit) that the daemon is ready:
// its control socket accepts connections, so that units ordered after
// tapswitch.service (and `systemctl start`, which waits) find it serving.
// It is sd_notify(3)'s "READY=1" on $NOTIFY_SOCKET, a unix datagram socket
// (a leading '@' names an abstract one); without NOTIFY_SOCKET it does
// nothing. The variable is unset afterwards so that children do not inherit
// it (sd_notify's unset_environment).
func notifyReady() error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	os.Unsetenv("NOTIFY_SOCKET")
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1\nMAINPID=" + fmt.Sprint(os.Getpid()) + "\n")); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
