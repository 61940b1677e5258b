package options

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Field is one key a spec takes and the way its value is read.
type Field struct {
	// Key is the key, as in key=value.
	Key string
	// Set reads a value into its place; its error says what is wrong with
	// the value, without naming the key.
	Set func(value string) error
}

// Fields parses items with Parse, handing each value to the Field of its
// key. Errors wrap invalid and name the key and value ("mtu=x: not a
// number"), or the keys known when one is not.
func Fields(items []string, invalid error, fields ...Field) error {
	return Parse(items, invalid, func(k, v string) error {
		for _, f := range fields {
			if f.Key != k {
				continue
			}
			if err := f.Set(v); err != nil {
				return fmt.Errorf("%w: %s=%s: %v", invalid, k, v, err)
			}
			return nil
		}
		keys := make([]string, len(fields))
		for i, f := range fields {
			keys[i] = f.Key
		}
		return fmt.Errorf("%w: unknown key %q (known: %s)", invalid, k, strings.Join(keys, ", "))
	})
}

// String is a Field's Set that stores the value as it is.
func String(p *string) func(string) error {
	return func(v string) error { *p = v; return nil }
}

// Int is a Field's Set that reads a decimal number.
func Int(p *int) func(string) error {
	return func(v string) (err error) {
		if *p, err = strconv.Atoi(v); err != nil {
			return errors.New("not a number")
		}
		return nil
	}
}

// Off is a Field's Set that reads "on" or "off" into *off, true for
// "off": for what is on unless turned off.
func Off(off *bool) func(string) error {
	return func(v string) error {
		switch v {
		case "on":
			*off = false
		case "off":
			*off = true
		default:
			return errors.New("on or off expected")
		}
		return nil
	}
}

// Addr is a Field's Set that reads an IP address.
func Addr(p *netip.Addr) func(string) error {
	return func(v string) (err error) {
		if *p, err = netip.ParseAddr(v); err != nil {
			return errors.New("not an IP address")
		}
		return nil
	}
}

// Prefix is a Field's Set that reads an address with a prefix length;
// example is one, for the error.
func Prefix(p *netip.Prefix, example string) func(string) error {
	return func(v string) (err error) {
		if *p, err = netip.ParsePrefix(v); err != nil {
			return fmt.Errorf("not an address with a prefix length such as %s", example)
		}
		return nil
	}
}

// MAC is a Field's Set that reads a MAC address (net.ParseMAC).
func MAC(p *net.HardwareAddr) func(string) error {
	return func(v string) (err error) {
		*p, err = net.ParseMAC(v)
		return err
	}
}
