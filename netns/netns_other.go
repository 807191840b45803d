//go:build !linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Of is the path of process pid's network namespace (Linux's /proc layout).
func Of(pid int) string { return fmt.Sprintf("/proc/%d/ns/net", pid) }

// Dial needs Linux's network namespaces.
func Dial(ctx context.Context, path, network, addr string) (net.Conn, error) {
	return nil, errors.New("network namespaces are Linux-only")
}

// DialWith needs Linux's network namespaces.
func DialWith(ctx context.Context, d *net.Dialer, path, network, addr string) (net.Conn, error) {
	return nil, errors.New("network namespaces are Linux-only")
}
