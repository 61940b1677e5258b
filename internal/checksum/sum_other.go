//go:build !amd64

package checksum

// hasAVX2 is false off amd64: Sum adds every word in Go.
var hasAVX2 = false

func sumWide([]byte) (uint64, int) { return 0, 0 }
