// Package integration holds tapswitch's end-to-end tests: the real binary,
// real network namespaces as containers, real TAP devices, ping and TCP/HTTP
// traffic between them. They need root; without it they skip, except when
// CI=true, where they fail. Their traffic goes only to addresses inside the
// namespaces they create, which they name with the test process's PID and
// always delete.
package integration
