package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tapswitch/tapswitch/internal/netnsutil"
)

// TestDemo runs `tapswitch demo` (what `make demo` runs) and checks what it
// reports and that it leaves no namespace, TAP or daemon behind.
func TestDemo(t *testing.T) {
	requireRoot(t, "ping")
	hostBefore := links(t, "")
	out, errOut, code := run(t, "demo")
	if code != 0 {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"3/3 replies", "200 OK: hello from c1", "demo passed",
		"GET http://198.51.100.2:8080/ from lan: 200 OK: hello from c1; you are 198.51.100.1:", "3/3 echo replies",
		"tcp      6 ", "flow entries have been shown",
		"nameserver 10.90.0.1", "10.90.0.2 c1.tapswitch", "198.51.100.80 www.example.test"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "3/3 replies"); n != 9 {
		t.Errorf("complete pings: got %d, want 9 (3 containers x 2 peers and the gateway)", n)
	}
	// Only the namespaces this demo made: another run may be going on.
	made := regexp.MustCompile(`\$ ip netns add (\S+)`).FindAllStringSubmatch(out, -1)
	if len(made) == 0 {
		t.Errorf("the demo output names no namespace it created:\n%s", out)
	}
	for _, m := range made {
		if _, err := os.Stat(filepath.Join("/etc/netns", m[1])); err == nil {
			t.Errorf("demo left /etc/netns/%s behind", m[1])
		}
		if _, err := os.Stat(netnsutil.Path(m[1])); err == nil {
			t.Errorf("demo left namespace %s behind", m[1])
		}
	}
	if after := links(t, ""); fmt.Sprint(after) != fmt.Sprint(hostBefore) {
		t.Errorf("host links changed: %v -> %v", hostBefore, after)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.HasPrefix(string(b), bin+"\x00run\x00") {
			t.Errorf("a daemon the demo started is still running: %s", p)
		}
	}
}
