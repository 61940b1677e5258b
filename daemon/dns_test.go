package daemon

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tapswitch/tapswitch/dns"
)

func TestParseAliases(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string // joined, or "error"
	}{
		{nil, ""},
		{[]string{"www", "api.v1"}, "www api.v1"},
		{[]string{"www", "WWW"}, "error"},
		{[]string{"gateway"}, "error"},
		{[]string{"-x"}, "error"},
		{[]string{"a b"}, "error"},
		{[]string{"x."}, "error"},
		{[]string{strings.Repeat("a", 65)}, "error"},
	} {
		got, err := parseAliases(tc.in)
		if tc.want == "error" {
			if err == nil {
				t.Errorf("parseAliases(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("parseAliases(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestResolvConf writes and removes the resolv.conf of a namespace under
// temporary stand-ins for /run/netns and /etc/netns.
func TestResolvConf(t *testing.T) {
	run, etc := t.TempDir(), t.TempDir()
	oldRun, oldEtc := netnsRunDir, netnsEtcDir
	netnsRunDir, netnsEtcDir = run, etc
	t.Cleanup(func() { netnsRunDir, netnsEtcDir = oldRun, oldEtc })
	srv, err := dns.New(dns.Config{Addr: netip.MustParseAddr("10.90.0.1"), Subnet: netip.MustParsePrefix("10.90.0.0/16"), Domain: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{cfg: Config{Gateway: netip.MustParseAddr("10.90.0.1")}, dns: srv, log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	a := &attachment{name: "web", netns: filepath.Join(run, "web")}
	d.writeResolvConf(a)
	path := filepath.Join(etc, "web", "resolv.conf")
	b, err := os.ReadFile(path)
	if err != nil || a.resolvConf != path || !strings.Contains(string(b), "nameserver 10.90.0.1\nsearch lab\n") {
		t.Fatalf("written %q (%v) at %q, want nameserver and search at %s", b, err, a.resolvConf, path)
	}
	d.removeResolvConf(a)
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Errorf("after removal: %v; want the directory it made gone", err)
	}

	// One that someone else wrote stays.
	own := filepath.Join(etc, "db", "resolv.conf")
	os.MkdirAll(filepath.Dir(own), 0o755)
	os.WriteFile(own, []byte("nameserver 192.0.2.1\n"), 0o644)
	b2 := &attachment{name: "db", netns: filepath.Join(run, "db")}
	d.writeResolvConf(b2)
	if got, _ := os.ReadFile(own); string(got) != "nameserver 192.0.2.1\n" || b2.resolvConf != "" {
		t.Errorf("another's resolv.conf: now %q, resolvConf %q; want it untouched", got, b2.resolvConf)
	}

	// A FIFO in its place neither blocks the attach (it is written under
	// the daemon's lock) nor is replaced; nor does one put there after
	// the write block the removal.
	fifo := filepath.Join(etc, "q", "resolv.conf")
	os.MkdirAll(filepath.Dir(fifo), 0o755)
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	q := &attachment{name: "q", netns: filepath.Join(run, "q")}
	d.writeResolvConf(q)
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 || q.resolvConf != "" {
		t.Errorf("a FIFO as resolv.conf: now %v (%v), resolvConf %q; want it untouched", fi.Mode(), err, q.resolvConf)
	}
	w := &attachment{name: "w", netns: filepath.Join(run, "w")}
	d.writeResolvConf(w)
	os.Remove(w.resolvConf)
	if err := syscall.Mkfifo(w.resolvConf, 0o644); err != nil {
		t.Fatal(err)
	}
	d.removeResolvConf(w) // returns
	if _, err := os.Lstat(w.resolvConf); err != nil {
		t.Errorf("a FIFO put in place of the resolv.conf written: %v; want it left", err)
	}

	// Not a namespace of /run/netns (--pid): nothing written.
	c := &attachment{name: "pid-1", netns: "/proc/1/ns/net"}
	d.writeResolvConf(c)
	if c.resolvConf != "" {
		t.Errorf("--pid attach: wrote %s", c.resolvConf)
	}
}
