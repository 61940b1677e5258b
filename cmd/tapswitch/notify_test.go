package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNotifyReady checks the datagram systemd's Type=notify waits for,
// on a path and on an abstract socket, and that nothing is sent without
// NOTIFY_SOCKET.
func TestNotifyReady(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run("abstract="+strconv.FormatBool(abstract), func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "notify")
			env := name
			if abstract {
				name = "\x00tapswitch-test-" + strconv.Itoa(os.Getpid())
				env = "@" + name[1:]
			}
			l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			t.Setenv("NOTIFY_SOCKET", env)
			if err := notifyReady(); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 256)
			n, err := l.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			want := "READY=1\nMAINPID=" + strconv.Itoa(os.Getpid()) + "\n"
			if got := string(buf[:n]); got != want {
				t.Errorf("datagram = %q, want %q", got, want)
			}
			if v, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
				t.Errorf("NOTIFY_SOCKET = %q after notifyReady, want it unset", v)
			}
		})
	}
	t.Run("unset", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		if err := notifyReady(); err != nil {
			t.Errorf("notifyReady without NOTIFY_SOCKET = %v, want nil", err)
		}
	})
	t.Run("no listener", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "none"))
		err := notifyReady()
		if err == nil || !strings.Contains(err.Error(), "notify systemd") {
			t.Errorf("notifyReady to a missing socket = %v, want a notify systemd error", err)
		}
	})
}
