package vxlan

import "unsafe"

// unsafePointer converts a pointer for the raw socket structures, kept in
// one place so that every use of package unsafe is here.
func unsafePointer[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }
