package tap

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenNetns refuses what is not a network namespace without blocking:
// a FIFO without a writer would block an open for reading for good.
func TestOpenNetns(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want error // nil: opened
	}{
		{"/proc/self/ns/net", nil},
		{fifo, ErrNotNetns},
		{dir, ErrNotNetns},
		{file, ErrNotNetns},
		{"/dev/null", ErrNotNetns},
		{"/proc/self/ns/uts", ErrNotNetns},
		{filepath.Join(dir, "missing"), ErrNetnsNotFound},
		{"/proc/999999999/ns/net", ErrNetnsNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			f, err := OpenNetns(tt.path)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("OpenNetns: %v", err)
				}
				typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
				f.Close()
				if err != nil || typ != unix.CLONE_NEWNET {
					t.Errorf("NS_GET_NSTYPE = %#x, %v; want CLONE_NEWNET", typ, err)
				}
				return
			}
			if err == nil {
				f.Close()
				t.Fatalf("OpenNetns succeeded, want %v", tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("OpenNetns = %v, want %v", err, tt.want)
			}
		})
	}
}
