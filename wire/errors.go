package wire

import "errors"

// ErrTooShort is returned by the Parse functions when the bytes are shorter
// than the fixed part of the header: the packet is truncated.
var ErrTooShort = errors.New("wire: header truncated")

// ErrBadHeader is returned by the Parse functions when a header's version,
// length fields or type fields are inconsistent with each other or with
// the bytes given.
var ErrBadHeader = errors.New("wire: malformed header")

// ErrOptions is returned by Fragmenter.Reset for a datagram with IPv4
// options, which it does not fragment.
var ErrOptions = errors.New("wire: ipv4 options not supported")
