//go:build !linux

package upstream

import (
	"context"
	"net"
)

// probe dials with net.Dialer off Linux; marks are Linux's.
func probe(network, addr string, mark int) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(context.Background(), network, addr)
}

// setMark does nothing off Linux.
func setMark(fd, mark int) {}
