// Package options reads the key=value lists of command-line specs such as
// `--uplink tap,netns=PATH,ip=ADDR/LEN`.
package options

import (
	"fmt"
	"strings"
)

// Parse calls set for each key=value item of items, in order. It stops at
// the first item without "=" or with an empty value, or with a key given
// before (errors wrapping invalid), or at the first error set returns.
func Parse(items []string, invalid error, set func(key, value string) error) error {
	seen := make(map[string]bool, len(items))
	for _, kv := range items {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return fmt.Errorf("%w: %q: want key=value", invalid, kv)
		}
		if seen[k] {
			return fmt.Errorf("%w: %s given twice", invalid, k)
		}
		seen[k] = true
		if err := set(k, v); err != nil {
			return err
		}
	}
	return nil
}
