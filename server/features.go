package server

import (
	"hash/fnv"
	"net"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/l4"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/units"
)

// Features reports which optional features this ten serve uses, and why one
// is off.
func (s *Server) Features() []apitype.Feature {
	return append(s.kern.Features(), s.frz.Feature())
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
