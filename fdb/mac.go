package fdb

import (
	"errors"
	"fmt"
)

// MAC is an IEEE 802 MAC-48 address. It is a comparable array, so it can be a
// map key and is passed without allocation.
type MAC [6]byte

// ErrInvalidMAC is returned (wrapped, with the reason) by [ParseMAC] and
// [MAC.UnmarshalText] when the text is not a MAC address in the accepted form.
var ErrInvalidMAC = errors.New("invalid MAC address")

// macTextLen is the length of "02:42:ac:11:00:02".
const macTextLen = 17

// ParseMAC parses a MAC-48 address written as six two-digit hexadecimal
// octets separated by ':' or '-' ("02:42:ac:11:00:02", "02-42-AC-11-00-02").
// Both letter cases are accepted; the separator must be the same throughout.
// Other forms that net.ParseMAC accepts (dotted Cisco form, EUI-64,
// 20-octet InfiniBand) are rejected, since the switch handles MAC-48 only.
// The error wraps [ErrInvalidMAC].
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if len(s) != macTextLen {
		return m, macError(s, fmt.Sprintf("want 6 hex octets like 02:42:ac:11:00:02 (17 characters), got %d characters", len(s)))
	}
	sep := s[2]
	if sep != ':' && sep != '-' {
		return m, macError(s, fmt.Sprintf("separator %q at offset 2, want ':' or '-'", sep))
	}
	for i := range m {
		o := i * 3
		if i > 0 && s[o-1] != sep {
			return m, macError(s, fmt.Sprintf("separator %q at offset %d, want %q as at offset 2", s[o-1], o-1, sep))
		}
		hi, ok1 := unhex(s[o])
		lo, ok2 := unhex(s[o+1])
		if !ok1 || !ok2 {
			return m, macError(s, fmt.Sprintf("octet %d %q is not two hex digits", i+1, s[o:o+2]))
		}
		m[i] = hi<<4 | lo
	}
	return m, nil
}

func macError(s, reason string) error {
	return fmt.Errorf("parse MAC %q: %w: %s", s, ErrInvalidMAC, reason)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const hexDigits = "0123456789abcdef"

// appendText appends the lower-case colon form of m to b.
func (m MAC) appendText(b []byte) []byte {
	for i, o := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[o>>4], hexDigits[o&0xf])
	}
	return b
}

// String returns m in lower-case colon form, "02:42:ac:11:00:02".
func (m MAC) String() string {
	var buf [macTextLen]byte
	return string(m.appendText(buf[:0]))
}

// MarshalText implements encoding.TextMarshaler with the form of
// [MAC.String], so a MAC is a JSON string in the control API.
func (m MAC) MarshalText() ([]byte, error) {
	return m.appendText(make([]byte, 0, macTextLen)), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with [ParseMAC].
func (m *MAC) UnmarshalText(text []byte) error {
	v, err := ParseMAC(string(text))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// IsMulticast reports whether the I/G (individual/group) bit, the least
// significant bit of the first octet, is set. Broadcast is a multicast
// address.
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool {
	return m == MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
}

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }
