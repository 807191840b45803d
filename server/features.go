package server

import (
	"fmt"
	"hash/fnv"
	"net"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/bpf/ebpf"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/l4"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router/upstream"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// Features reports which optional features this ten serve uses, and why one
// is off.
func (s *Server) Features() []apitype.Feature {
	return append(s.kern.Features(), s.frz.Feature(), s.ownerCheck)
}

// checkPortOwners says whether the kernel tells the router who answers on
// a PORT app's address (upstream.CheckPeerCgroups).
func checkPortOwners() error {
	self, err := ebpf.SelfCgroupID()
	if err != nil {
		return err
	}
	return upstream.CheckPeerCgroups(self)
}

// portOwnerFeature is the feature of checking who answers on a PORT app's
// address, from checkPortOwners' answer.
func portOwnerFeature(err error) apitype.Feature {
	f := apitype.Feature{Name: "port-owner-check", On: err == nil,
		Detail: "a PORT app's address is taken for the app only when the socket that answers belongs to the instance's service (its cgroup)"}
	if err != nil {
		f.Detail = "off: " + err.Error()
	}
	return f
}

// portOwner checks that peerCgroup, the cgroup of the socket answering on
// 127.0.0.1:port, is inst's service: a PORT is on the host's loopback,
// where another process (another tenant's app, a host daemon) can bind a
// sleeping instance's PORT and would otherwise get its requests, cookies
// and all.
func (s *Server) portOwner(inst units.Instance, port int, peerCgroup uint64) error {
	want, err := ebpf.CgroupID(systemd.ServiceDir(s.cgroupRoot, inst))
	if err != nil {
		return fmt.Errorf("127.0.0.1:%d answers, but %s's service runs no process (%v): not its app; another process holds its PORT", port, inst, err)
	}
	if want != peerCgroup {
		return fmt.Errorf("127.0.0.1:%d answers from a process outside %s's service (cgroup %d, the service's %d): another process holds its PORT, and ten does not send it the instance's requests", port, inst, peerCgroup, want)
	}
	return nil
}

// reservePorts reserves inst's PORT (from a stable hash of its name) and,
// when it has L4 addresses, the port of its internal sockets, in one step
// of the registry.
func (s *Server) reservePorts(inst units.Instance, listen []config.Listen) (registry.Ports, error) {
	lo, hi := s.cfg.Settings.PortRange[0], s.cfg.Settings.PortRange[1]
	h := fnv.New32a()
	h.Write([]byte(inst.String()))
	req := registry.PortRequest{Lo: lo, Hi: hi, Start: int(h.Sum32() % uint32(max(hi-lo+1, 1))), L4Start: int(time.Now().UnixNano() % int64(max(hi-lo+1, 1)))}
	if len(listen) > 0 {
		req.L4 = func(p int) []string { return l4.InternalSockets(listen, p) }
	}
	return s.reg.ReservePorts(inst, req, canBind)
}

// canBind reports whether a TCP address can be bound on this host now.
func canBind(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}
