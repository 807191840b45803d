package upstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Netlink sock_diag constants (linux/inet_diag.h) that x/sys/unix does not
// carry.
const (
	inetDiagCgroupID = 21 // INET_DIAG_CGROUP_ID: u64, since Linux 5.9
	inetDiagNoCookie = ^uint32(0)
	sizeofReqV2      = 56     // struct inet_diag_req_v2
	sizeofDiagMsg    = 72     // struct inet_diag_msg
	nlaTypeMask      = 0x3fff // ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
)

// PeerCgroup returns the cgroup (v2) id of the socket at the other end of c,
// a TCP connection over IPv4 loopback that this process dialed: the socket
// the app's listener made for it, which belongs to the cgroup of the
// process that made the listener. One sock_diag lookup by the connection's
// four addresses (an established socket is found in the accept queue too).
// The id is the inode number of the cgroup's directory in the cgroup2 file
// system.
func PeerCgroup(c net.Conn) (uint64, error) {
	local, lok := c.LocalAddr().(*net.TCPAddr)
	remote, rok := c.RemoteAddr().(*net.TCPAddr)
	if !lok || !rok || local.IP.To4() == nil || remote.IP.To4() == nil {
		return 0, fmt.Errorf("peer cgroup: %s → %s is not a TCP/IPv4 connection", c.LocalAddr(), c.RemoteAddr())
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, os.NewSyscallError("socket(NETLINK_SOCK_DIAG)", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(time.Second))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	// nlmsghdr + inet_diag_req_v2. The socket looked up is the app's:
	// its source is the app's address (the remote end here), its
	// destination ours.
	req := make([]byte, unix.SizeofNlMsghdr+sizeofReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // seq
	r := req[unix.SizeofNlMsghdr:]
	r[0], r[1] = unix.AF_INET, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], ^uint32(0)) // every state
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], uint16(remote.Port))
	binary.BigEndian.PutUint16(id[2:], uint16(local.Port))
	copy(id[4:8], remote.IP.To4())
	copy(id[20:24], local.IP.To4())
	ne.PutUint32(id[40:], inetDiagNoCookie)
	ne.PutUint32(id[44:], inetDiagNoCookie)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, os.NewSyscallError("sendto(NETLINK_SOCK_DIAG)", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, os.NewSyscallError("recvfrom(NETLINK_SOCK_DIAG)", err)
	}
	return parseDiag(buf[:n])
}

// parseDiag reads the cgroup id out of a sock_diag answer (one message).
func parseDiag(b []byte) (uint64, error) {
	ne := binary.NativeEndian
	if len(b) < unix.SizeofNlMsghdr {
		return 0, errors.New("peer cgroup: short netlink answer")
	}
	l, typ := int(ne.Uint32(b[0:])), ne.Uint16(b[4:])
	if l > len(b) || l < unix.SizeofNlMsghdr {
		return 0, errors.New("peer cgroup: bad netlink length")
	}
	b = b[unix.SizeofNlMsghdr:l]
	switch typ {
	case unix.NLMSG_ERROR:
		if len(b) >= 4 {
			if errno := int32(ne.Uint32(b)); errno != 0 {
				return 0, fmt.Errorf("peer cgroup: %w", unix.Errno(-errno))
			}
		}
		return 0, errors.New("peer cgroup: netlink error")
	case unix.SOCK_DIAG_BY_FAMILY:
	default:
		return 0, fmt.Errorf("peer cgroup: netlink message type %d", typ)
	}
	if len(b) < sizeofDiagMsg {
		return 0, errors.New("peer cgroup: short inet_diag_msg")
	}
	for a := b[sizeofDiagMsg:]; len(a) >= 4; {
		al, at := int(ne.Uint16(a[0:])), ne.Uint16(a[2:])&nlaTypeMask
		if al < 4 || al > len(a) {
			break
		}
		if at == inetDiagCgroupID && al >= 12 {
			return ne.Uint64(a[4:12]), nil
		}
		a = a[min((al+3)&^3, len(a)):]
	}
	return 0, errors.New("peer cgroup: the kernel reports no cgroup of sockets (INET_DIAG_CGROUP_ID, Linux 5.9)")
}

// CheckPeerCgroups says whether PeerCgroup tells the cgroup of a socket's
// maker on this kernel: a connection to a listener of this process must
// report self, this process's own cgroup (ebpf.SelfCgroupID). It fails
// where the kernel reports no socket cgroups (before Linux 5.9) or stopped
// tracking sockets' cgroup2 cgroups (it does when the v1 net_cls or
// net_prio controllers are configured).
func CheckPeerCgroups(self uint64) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	got, err := PeerCgroup(c)
	if err != nil {
		return err
	}
	if got != self {
		return fmt.Errorf("a socket of this process reports cgroup %d, not its own (%d): the kernel does not track sockets' cgroup2 cgroups here (v1 net_cls or net_prio in use?)", got, self)
	}
	return nil
}
