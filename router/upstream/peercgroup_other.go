//go:build !linux

package upstream

import (
	"errors"
	"net"
)

var errPeerCgroup = errors.New("the cgroup of a socket's maker is known on Linux only")

// PeerCgroup is Linux-only; elsewhere it fails.
func PeerCgroup(net.Conn) (uint64, error) { return 0, errPeerCgroup }

// CheckPeerCgroups is Linux-only; elsewhere it fails.
func CheckPeerCgroups(uint64) error { return errPeerCgroup }
