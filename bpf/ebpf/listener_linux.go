package ebpf

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FindListener returns a duplicate of the listening socket that process pid
// holds for addr, taken with pidfd_getfd(2) (Linux 5.6+).
//
// This is how ten gets an instance's socket for RegisterSocket: systemd (PID
// 1) creates and holds the sockets of socket units, a transient unit cannot
// be handed a socket ten made, and a socket cannot be opened through
// /proc/PID/fd. FindListener finds the socket's inode in the process's
// network namespace (/proc/PID/net/tcp, tcp6, udp, udp6), the descriptor
// pointing at that inode in /proc/PID/fd, and copies it. The caller needs
// ptrace access to pid (PTRACE_MODE_ATTACH_REALCREDS: root with
// CAP_SYS_PTRACE for PID 1); the copy shares the socket, it does not steal
// it, and may be closed after RegisterSocket.
//
// network is "tcp", "tcp4", "tcp6", "udp", "udp4" or "udp6"; addr is the
// address the socket is bound to, as the socket unit's Listen property says
// it ("127.0.0.1:7000", "[::]:7000", "0.0.0.0:7000" for a wildcard).
func FindListener(pid int, network, addr string) (*os.File, error) {
	f, err := findListener(pid, network, addr)
	if err != nil {
		return nil, fmt.Errorf("find %s listener %s of pid %d: %w", network, addr, pid, err)
	}
	return f, nil
}

func findListener(pid int, network, addr string) (*os.File, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	var table, state string
	switch strings.TrimRight(network, "46") {
	case "tcp":
		table, state = "tcp", "0A" // TCP_LISTEN
	case "udp":
		table, state = "udp", "07" // TCP_CLOSE: bound, not connected
	default:
		return nil, fmt.Errorf("network %q is not tcp or udp", network)
	}
	if ap.Addr().Is6() {
		table += "6"
	}
	inodes, err := socketInodes(fmt.Sprintf("/proc/%d/net/%s", pid, table), ap, state)
	if err != nil {
		return nil, err
	}
	if len(inodes) == 0 {
		return nil, os.ErrNotExist
	}
	return dupSocket(pid, inodes, network+":"+addr)
}

// socketInodes returns the inodes of the sockets in a /proc/net table bound
// to ap in the given state.
func socketInodes(path string, ap netip.AddrPort, state string) ([]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseSocketTable(f, ap, state)
}

// parseSocketTable reads the format of /proc/net/tcp: after a header line,
// "sl local_address rem_address st ... uid timeout inode ...", addresses as
// hex of the in-memory (network order) address words and a hex port.
func parseSocketTable(r io.Reader, ap netip.AddrPort, state string) ([]uint64, error) {
	var inodes []uint64
	s := bufio.NewScanner(r)
	s.Scan() // header
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 10 || f[3] != state {
			continue
		}
		local, err := parseProcAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("parse %q: %w", s.Text(), err)
		}
		if local != ap {
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse %q: %w", s.Text(), err)
		}
		inodes = append(inodes, ino)
	}
	return inodes, s.Err()
}

// parseProcAddr parses "0100007F:1F40" (IPv4) or 32 hex digits and a port
// (IPv6). Each 32-bit word is printed as a native-endian number.
func parseProcAddr(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, errors.New("no port")
	}
	raw, err := hex.DecodeString(host)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", host)
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i += 4 {
		b = binary.NativeEndian.AppendUint32(b, binary.BigEndian.Uint32(raw[i:i+4]))
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", port)
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(p)), nil
}

type procFD struct {
	fd    int
	inode uint64
}

// socketFDs returns the descriptors of process pid that are the sockets.
func socketFDs(pid int, inodes []uint64) ([]procFD, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	want := make(map[string]uint64, len(inodes))
	for _, ino := range inodes {
		want[fmt.Sprintf("socket:[%d]", ino)] = ino
	}
	var fds []procFD
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		ino, ok := want[target]
		if !ok {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds = append(fds, procFD{fd, ino})
	}
	return fds, nil
}

// FindPortListener returns a duplicate of a listening TCP socket on port,
// bound to any address (127.0.0.1, 0.0.0.0, ::, ::1), that one of pids
// holds: the socket of an app that was told PORT and binds it itself. The
// first process (in pids order) that holds one wins, and in it an IPv6
// socket, as a dual-stack one serves both families. It copies each socket
// descriptor of the process with pidfd_getfd(2) and asks the socket itself
// (SO_ACCEPTCONN, getsockname), so the process's network namespace does not
// matter. Like FindListener it needs ptrace access to the process.
func FindPortListener(pids []int, port uint16) (*os.File, error) {
	var first error
	for _, pid := range pids {
		f, err := portListener(pid, port)
		if err == nil {
			return f, nil
		}
		if first == nil || !errors.Is(err, os.ErrNotExist) {
			first = err
		}
	}
	if first == nil {
		first = os.ErrNotExist
	}
	return nil, fmt.Errorf("find TCP listener on port %d of pids %v: %w", port, pids, first)
}

func portListener(pid int, port uint16) (*os.File, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	var v4 *os.File
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:[") {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dup, err := unix.PidfdGetfd(pidfd, fd, 0)
		if err != nil {
			continue // closed meanwhile
		}
		family, ok := tcpListenerOn(dup, port)
		if !ok {
			unix.Close(dup)
			continue
		}
		f := os.NewFile(uintptr(dup), fmt.Sprintf("tcp:%d", port))
		if family == unix.AF_INET6 {
			if v4 != nil {
				v4.Close()
			}
			return f, nil
		}
		if v4 == nil {
			v4 = f
		} else {
			f.Close()
		}
	}
	if v4 != nil {
		return v4, nil
	}
	return nil, os.ErrNotExist
}

// tcpListenerOn reports whether fd is a listening (plain) TCP socket bound to
// port, and its family.
func tcpListenerOn(fd int, port uint16) (int, bool) {
	if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.IPPROTO_TCP {
		return 0, false
	}
	if l, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || l == 0 {
		return 0, false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, false
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return unix.AF_INET, a.Port == int(port)
	case *unix.SockaddrInet6:
		return unix.AF_INET6, a.Port == int(port)
	}
	return 0, false
}

// dupSocket copies the descriptor of pid that is one of the socket inodes.
func dupSocket(pid int, inodes []uint64, name string) (*os.File, error) {
	fds, err := socketFDs(pid, inodes)
	if err != nil {
		return nil, err
	}
	if len(fds) == 0 {
		return nil, fmt.Errorf("socket inode %v: no descriptor in /proc/%d/fd: %w", inodes, pid, os.ErrNotExist)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	for _, fd := range fds {
		dup, err := unix.PidfdGetfd(pidfd, fd.fd, 0)
		if err != nil {
			return nil, fmt.Errorf("pidfd_getfd %d: %w", fd.fd, err)
		}
		// The process may have closed the descriptor and reused its number.
		var st unix.Stat_t
		if err := unix.Fstat(dup, &st); err != nil || st.Ino != fd.inode {
			unix.Close(dup)
			continue
		}
		return os.NewFile(uintptr(dup), name), nil
	}
	return nil, fmt.Errorf("descriptors %v changed while copying: %w", fds, os.ErrNotExist)
}
