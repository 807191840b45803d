// Package l4 wires L4 listen addresses (service key listen) to instances:
// Assign picks each instance's addresses, Label names an instance in the
// sk_lookup dispatcher, and Proxy is the userspace fallback that serves the
// addresses where BPF cannot be used.
//
// An instance's socket unit holds, besides the router's unix socket, one
// internal TCP listening socket per address family (units.Options.L4Sockets,
// 127.0.0.1:PORT or [::1]:PORT). With BPF, ten's sk_lookup program steers a
// connection for any of the instance's listen addresses straight into that
// socket: systemd wakes a sleeping instance, the app accepts with the
// client's own address as peer, and nothing copies bytes. Without BPF, Proxy
// listens on the addresses and splices each connection to the internal
// socket; the app then sees ten's proxy as the peer.
package l4

import (
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
	"strings"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/units"
)

// maxProbe bounds how many addresses of a prefix Assign tries.
const maxProbe = 1 << 16

// Assign picks the L4 addresses of a new instance from its service's listen
// specs. A single address is taken as written; it may belong to one instance
// at a time. A prefix gives each instance one address of its own: the first
// free one from a stable hash of the instance name, so an instance that is
// stopped and spawned again usually gets the same address. held lists what
// other instances hold; an overlap with them is an error naming the holder.
func Assign(inst units.Instance, specs []config.Listen, held map[units.Instance][]config.Listen) ([]config.Listen, error) {
	var out []config.Listen
	holder := func(l config.Listen) (units.Instance, config.Listen, bool) {
		for other, ls := range held {
			if other == inst {
				continue
			}
			for _, h := range ls {
				if h.Overlaps(l) {
					return other, h, true
				}
			}
		}
		for _, h := range out {
			if h.Overlaps(l) {
				return inst, h, true
			}
		}
		return units.Instance{}, config.Listen{}, false
	}
	for _, spec := range specs {
		if !spec.PerInstance() {
			if who, h, ok := holder(spec); ok {
				return nil, fmt.Errorf("listen address %s: %s holds %s (an address of its own belongs to one instance; use a prefix such as tcp://127.0.1.0/24:%d for one address per instance)", spec, who, h, spec.Port)
			}
			out = append(out, spec)
			continue
		}
		first, n := hostRange(spec.Prefix)
		h := fnv.New64a()
		h.Write([]byte(inst.String()))
		start := h.Sum64() % n
		found := false
		for i := uint64(0); i < min(n, maxProbe); i++ {
			a := addOffset(first, (start+i)%n)
			c := spec
			c.Prefix = netip.PrefixFrom(a, a.BitLen())
			if _, _, taken := holder(c); !taken {
				out = append(out, c)
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("listen address %s: every address is held by another instance", spec)
		}
	}
	return out, nil
}

// hostRange returns the first usable address of p and how many there are:
// the prefix's own (network) address is skipped, and for IPv4 its
// broadcast address.
func hostRange(p netip.Prefix) (netip.Addr, uint64) {
	hostBits := p.Addr().BitLen() - p.Bits()
	n := uint64(1) << min(hostBits, 63)
	n-- // network address
	if p.Addr().Is4() {
		n-- // broadcast address
	}
	return p.Addr().Next(), n
}

// addOffset returns a + off.
func addOffset(a netip.Addr, off uint64) netip.Addr {
	b := a.AsSlice()
	v := new(big.Int).SetBytes(b)
	v.Add(v, new(big.Int).SetUint64(off))
	buf := v.FillBytes(make([]byte, len(b)))
	r, _ := netip.AddrFromSlice(buf)
	return r
}

// ParseAll parses listen addresses (as in TEN_LISTEN, separated by spaces,
// or a service's listen list).
func ParseAll(specs ...string) ([]config.Listen, error) {
	var out []config.Listen
	for _, s := range specs {
		for _, f := range strings.Fields(s) {
			l, err := config.ParseListen(f)
			if err != nil {
				return nil, err
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// Strings renders listen addresses for units.Options.Listen.
func Strings(ls []config.Listen) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.String()
	}
	return out
}

// Families reports which address families the addresses need an internal
// socket for.
func Families(ls []config.Listen) (v4, v6 bool) {
	for _, l := range ls {
		if l.Prefix.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}

// InternalSockets returns the socket unit's internal TCP addresses for an
// internal port: 127.0.0.1:PORT and/or [::1]:PORT, as the families need.
func InternalSockets(ls []config.Listen, port int) []string {
	v4, v6 := Families(ls)
	var out []string
	if v4 {
		out = append(out, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String())
	}
	if v6 {
		out = append(out, netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port)).String())
	}
	return out
}

// Label names an instance in the dispatcher, whose labels are at most 63
// bytes: the instance name, or for a longer one a prefix of it and a hash.
func Label(inst units.Instance) string {
	s := inst.String()
	if len(s) <= 63 {
		return s
	}
	h := fnv.New64a()
	h.Write([]byte(s))
	return fmt.Sprintf("%s~%016x", s[:46], h.Sum64())
}
