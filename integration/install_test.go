package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstall runs `make install` and `make uninstall` into a DESTDIR with
// PREFIX and CNI_BIN_DIR set: the daemon, the plugin and the two units land
// where asked, the units name the installed binary, and uninstall removes
// them all. Nothing outside DESTDIR is written but bin/ (make build).
func TestInstall(t *testing.T) {
	requireRoot(t, "make", "install")
	dest := t.TempDir()
	vars := []string{"-C", "..", "DESTDIR=" + dest, "PREFIX=/usr", "CNI_BIN_DIR=/usr/libexec/cni", "UNIT_DIR=/lib/systemd/system"}
	if out, err := exec.Command("make", append(vars, "install")...).CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	files := map[string]os.FileMode{
		"/usr/bin/tapswitch":                      0o755,
		"/usr/libexec/cni/tapswitch":              0o755,
		"/lib/systemd/system/tapswitch.service":   0o644,
		"/usr/lib/systemd/user/tapswitch.service": 0o644,
	}
	for f, mode := range files {
		fi, err := os.Stat(filepath.Join(dest, f))
		if err != nil {
			t.Errorf("after make install: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", f, fi.Mode().Perm(), mode)
		}
	}
	for _, unit := range []string{"/lib/systemd/system/tapswitch.service", "/usr/lib/systemd/user/tapswitch.service"} {
		b, err := os.ReadFile(filepath.Join(dest, unit))
		if err != nil {
			continue // reported above
		}
		s := string(b)
		if !strings.Contains(s, "\nExecStart=/usr/bin/tapswitch run ") || !strings.Contains(s, "\nType=notify\n") || strings.Contains(s, "@BINDIR@") {
			t.Errorf("%s: want Type=notify and ExecStart=/usr/bin/tapswitch run ...:\n%s", unit, s)
		}
	}
	// The installed plugin answers VERSION.
	cmd := exec.Command(filepath.Join(dest, "/usr/libexec/cni/tapswitch"))
	cmd.Env = []string{"CNI_COMMAND=VERSION"}
	if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), `"1.1.0"`) {
		t.Errorf("installed plugin VERSION: %v: %s", err, out)
	}
	if out, err := exec.Command("make", append(vars, "uninstall")...).CombinedOutput(); err != nil {
		t.Fatalf("make uninstall: %v\n%s", err, out)
	}
	for f := range files {
		if _, err := os.Stat(filepath.Join(dest, f)); !os.IsNotExist(err) {
			t.Errorf("%s after make uninstall: %v, want it gone", f, err)
		}
	}
}
