package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tapswitch/tapswitch/api"
)

// stateVersion is the version of the state file's format.
const stateVersion = 1

// state is what the daemon keeps across restarts, in its state file:
//
//	{"version": 1, "next_rule_id": 3, "rules": [{"id": 1, ...}, {"id": 2, ...}],
//	 "ports": [{"request": {...}, "name": "c1", "mac": ..., "ip": ...}]}
//
// next_rule_id is kept so that an ID is never reused within a state file,
// even after the rule that had it was deleted. ports are the attached
// containers, kept with --live-restore only (restore.go).
type state struct {
	Version    int         `json:"version"`
	NextRuleID int         `json:"next_rule_id"`
	Rules      []api.Rule  `json:"rules"`
	Ports      []savedPort `json:"ports,omitempty"`
	// Subnet6 is the IPv6 subnet a daemon run with --ipv6 and without
	// --subnet6 chose (a random unique local /64), kept so that
	// containers keep their addresses across restarts.
	Subnet6 string `json:"subnet6,omitempty"`
}

// StatePath is the default state file of a daemon whose control socket is
// at sock: beside it, with ".sock" replaced by ".state.json" (or
// ".state.json" appended), so that every daemon has its own.
func StatePath(sock string) string {
	return strings.TrimSuffix(sock, ".sock") + ".state.json"
}

// loadState reads the state file at path. A missing file is an empty state;
// one that cannot be read or parsed, of another version, or with rules that
// are not valid is an error naming the file: the daemon refuses to start
// rather than run without rules the user set.
func loadState(path string) (state, error) {
	st := state{Version: stateVersion, NextRuleID: 1}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("state file %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("state file %s is corrupt (%v); fix or remove it", path, err)
	}
	if dec.More() {
		return st, fmt.Errorf("state file %s is corrupt (data after the JSON object); fix or remove it", path)
	}
	if st.Version != stateVersion {
		return st, fmt.Errorf("state file %s: version %d, this tapswitch reads version %d", path, st.Version, stateVersion)
	}
	last := 0
	for _, r := range st.Rules {
		if r.ID <= last {
			return st, fmt.Errorf("state file %s is corrupt: rule IDs must increase (rule %d after %d)", path, r.ID, last)
		}
		last = r.ID
		if err := r.Validate(); err != nil {
			return st, fmt.Errorf("state file %s: rule %d: %v", path, r.ID, err)
		}
	}
	if st.NextRuleID <= last {
		return st, fmt.Errorf("state file %s is corrupt: next_rule_id %d is not above the last rule's ID %d", path, st.NextRuleID, last)
	}
	return st, nil
}

// save writes st to path atomically: a temporary file in the same
// directory, written, synced and renamed over path (mode 0600), then the
// directory synced, so that a crash leaves the old file or the new one,
// never a mix.
func (st state) save(path string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("state file: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("state file: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state file: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
