package testutil

import (
	"slices"
	"sync"
)

// Frames keeps copies of the frames (or packets) a test double is handed,
// until the test takes them. It is safe for concurrent use; the zero value
// is ready to use.
type Frames struct {
	mu  sync.Mutex // guards got
	got [][]byte
}

// Add keeps a copy of b: the caller may reuse b once Add returns.
func (f *Frames) Add(b []byte) {
	c := slices.Clone(b)
	f.mu.Lock()
	f.got = append(f.got, c)
	f.mu.Unlock()
}

// Take returns the frames added since the last Take, oldest first, and
// forgets them.
func (f *Frames) Take() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	got := f.got
	f.got = nil
	return got
}
