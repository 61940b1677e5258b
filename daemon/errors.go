package daemon

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/tapswitch/tapswitch/fdb"
	"github.com/tapswitch/tapswitch/nat"
	"github.com/tapswitch/tapswitch/switch/tap"
	"github.com/tapswitch/tapswitch/uplink"
	"github.com/tapswitch/tapswitch/vxlan"
)

// Errors the daemon's methods wrap, so that the control API can answer with
// the right status.
var (
	// ErrInvalid is returned when a request has malformed or out-of-range input.
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound is returned when a named port or namespace does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a name, address or MAC is already in use.
	ErrConflict = errors.New("already in use")
	// ErrForbidden is returned when the daemon may not act on a namespace:
	// without root, one that belongs to another user.
	ErrForbidden = errors.New("forbidden")
)

// reqError is an error with a kind (ErrInvalid, ErrNotFound, ErrConflict)
// that chooses the status code, and a message that stands alone.
type reqError struct {
	kind error
	msg  string
}

func (e *reqError) Error() string        { return e.msg }
func (e *reqError) Is(target error) bool { return target == e.kind }

func invalid(format string, a ...any) error {
	return &reqError{ErrInvalid, fmt.Sprintf(format, a...)}
}

func conflict(format string, a ...any) error {
	return &reqError{ErrConflict, fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &reqError{ErrNotFound, fmt.Sprintf(format, a...)}
}

// errorKinds are the sentinel errors of the parts the daemon drives, each
// with the kind the API answers it with: the daemon's one such mapping.
var errorKinds = []struct{ err, kind error }{
	{tap.ErrNetnsNotFound, ErrNotFound},
	{tap.ErrNotNetns, ErrInvalid},
	{tap.ErrLinkExists, ErrConflict},
	{tap.ErrInvalidConfig, ErrInvalid},
	{uplink.ErrInvalidSpec, ErrInvalid},
	{uplink.ErrHostPortInUse, ErrConflict},
	{nat.ErrPublishOverlap, ErrConflict},
	{nat.ErrPortInUse, ErrConflict},
	{nat.ErrNoPublish, ErrNotFound},
	{nat.ErrBadPublish, ErrInvalid},
	{vxlan.ErrInvalidConfig, ErrInvalid},
	{vxlan.ErrFull, ErrInvalid},
	{fdb.ErrNotUnicast, ErrInvalid},
	{vxlan.ErrVNIInUse, ErrConflict},
	{syscall.EADDRINUSE, ErrConflict},   // a tunnel's port, taken by another program
	{syscall.EADDRNOTAVAIL, ErrInvalid}, // a tunnel's local address, not this host's
}

// errorKind gives err, keeping its message, the kind of the first sentinel
// of errorKinds it wraps; it returns other errors (and nil) as they are.
func errorKind(err error) error {
	if err == nil {
		return nil
	}
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return &reqError{k.kind, err.Error()}
		}
	}
	return err
}
