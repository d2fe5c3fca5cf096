// Package ports finds loopback ports for servers a test starts.
package ports

import (
	"net"
	"testing"
)

// Free returns a loopback TCP port nothing listens on now.
func Free(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
