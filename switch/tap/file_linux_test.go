package tap

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFromFD hands a TAP's descriptor to FromFD, as the namespace helper's
// receiver does: the adopted Device reads frames the namespace sends, keeps
// the offloads it is told, and deletes the TAP when it closes.
func TestFromFD(t *testing.T) {
	requireRoot(t)
	_, path := newNetns(t)
	orig := create(t, testConfig(path))
	var dup int
	tunFd(t, orig, func(fd int) {
		var err error
		if dup, err = unix.Dup(fd); err != nil {
			t.Fatal(err)
		}
	})
	orig.Close()
	d, err := FromFD(dup, "eth0", path, orig.Offloads(), orig.GSOMaxSegs())
	if err != nil {
		t.Fatalf("FromFD: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if d.Name() != "eth0" || d.Netns() != path || d.Offloads() != orig.Offloads() || d.GSOMaxSegs() != MaxGSOSegs {
		t.Errorf("got name %q netns %q offloads %s gso_max_segs %d, want eth0, %s, %s, %d", d.Name(), d.Netns(), d.Offloads(), d.GSOMaxSegs(), path, orig.Offloads(), MaxGSOSegs)
	}
	if got := linkNames(t, path); !slices.Contains(got, "eth0") {
		t.Fatalf("links after the first file closed: %v, want eth0 kept by the adopted one", got)
	}
	var fd int
	if err := inNetns(t, path, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrInet4{Port: 9, Addr: peerIP.As4()}); err != nil {
		t.Fatal(err)
	}
	readFrame(t, d, 5*time.Second, func(f []byte) bool { return isARP(f, 1, peerIP) })

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := linkNames(t, path); slices.Contains(got, "eth0") {
		t.Errorf("links after Close: %v, want eth0 gone", got)
	}
}

// TestFromFDNotTap refuses a descriptor that is not a TAP and closes it.
func TestFromFDNotTap(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	if _, err := FromFD(p[0], "eth0", "", 0, 0); err == nil {
		t.Fatal("FromFD(pipe) = nil error, want one")
	}
	if _, err := unix.FcntlInt(uintptr(p[0]), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("fcntl on the refused descriptor: %v, want EBADF (closed)", err)
	}
}
