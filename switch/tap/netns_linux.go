package tap

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrNotNetns is returned (wrapped, with the path) when a namespace path
// names something that is not a network namespace: a directory, a regular
// file, a FIFO, another kind of namespace.
var ErrNotNetns = errors.New("not a network namespace")

// OpenNetns opens the network namespace file at path (a bind mount as `ip
// netns` makes, or /proc/PID/ns/net) without ever blocking: the path is
// first opened with O_PATH, which opens nothing (a FIFO would block an
// open for reading until a writer came), and checked to be on nsfs
// (NSFS_MAGIC, fstatfs); only then is it opened for real, through
// /proc/self/fd, and checked to be a network namespace (NS_GET_NSTYPE,
// Linux 4.11). The caller owns the file.
//
// A path that does not exist (a dead process's /proc/PID/ns/net included)
// is ErrNetnsNotFound; one that exists but is not a network namespace is
// ErrNotNetns; both are wrapped with the path.
func OpenNetns(path string) (*os.File, error) {
	fd, err := openNetnsFd(path)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openNetnsFd is OpenNetns returning the bare fd (O_CLOEXEC).
func openNetnsFd(path string) (int, error) {
	pfd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return -1, fmt.Errorf("%w: %s", ErrNetnsNotFound, path)
	}
	if err != nil {
		return -1, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(pfd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(pfd, &st); err != nil {
		return -1, fmt.Errorf("open netns %s: fstatfs: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return -1, fmt.Errorf("%s: %w", path, ErrNotNetns)
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if errors.Is(err, unix.ENOENT) {
		// The namespace died between the two opens.
		return -1, fmt.Errorf("%w: %s", ErrNetnsNotFound, path)
	}
	if err != nil {
		return -1, fmt.Errorf("open netns %s: %w", path, err)
	}
	// NS_GET_NSTYPE returns the namespace's CLONE_NEW* type.
	if typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err != nil || typ != unix.CLONE_NEWNET {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", path, ErrNotNetns)
	}
	return fd, nil
}
