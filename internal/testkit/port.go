package testkit

import (
	"net"
	"testing"
)

// FreeAddr returns an address (host:port) of 127.0.0.1 that was free a
// moment ago.
func FreeAddr() (string, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	return addr.String(), nil
}

// FreePort is FreeAddr's port, for a test.
func FreePort(tb testing.TB) int {
	tb.Helper()
	addr, err := freeAddr()
	if err != nil {
		tb.Fatal(err)
	}
	return addr.Port
}

func freeAddr() (*net.TCPAddr, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr), nil
}
