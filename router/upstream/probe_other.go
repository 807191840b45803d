//go:build !linux

package upstream

import (
	"context"
	"net"
)

// probe dials with net.Dialer off Linux.
func probe(network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(context.Background(), network, addr)
}
