package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Listen is one parsed L4 listen address of a service (key listen):
//
//	tcp://127.0.0.1:7000            one address and port: the service's, held by one instance
//	tcp://127.0.0.1:7000-7099       one address, every port of the range
//	tcp://127.0.1.0/24:7000         per instance: each instance gets one address of the prefix
//	tcp://127.0.1.0/24:7000-7999    per instance, every port of the range
//	tcp://[::1]:7000, tcp://[fd00::/120]:7000
type Listen struct {
	// Protocol is "tcp".
	Protocol string
	// Prefix is the address range; a single address is a /32 (or /128).
	Prefix netip.Prefix
	// Port is the port, or the first of a range; PortEnd is the last of a
	// range (inclusive), 0 for a single port.
	Port, PortEnd uint16
}

// PerInstance reports whether the address is a prefix from which each
// instance gets one address, rather than one address for one instance.
func (l Listen) PerInstance() bool { return !l.Prefix.IsSingleIP() }

// LastPort is the last port the address covers.
func (l Listen) LastPort() uint16 {
	if l.PortEnd == 0 {
		return l.Port
	}
	return l.PortEnd
}

// Overlaps reports whether l and o share a protocol, an address and a port.
func (l Listen) Overlaps(o Listen) bool {
	return l.Protocol == o.Protocol && l.Prefix.Overlaps(o.Prefix) &&
		l.Port <= o.LastPort() && o.Port <= l.LastPort()
}

// String renders l as ParseListen reads it.
func (l Listen) String() string {
	host := l.Prefix.Addr().String()
	if !l.Prefix.IsSingleIP() {
		host = l.Prefix.String()
	}
	if l.Prefix.Addr().Is6() {
		host = "[" + host + "]"
	}
	port := strconv.Itoa(int(l.Port))
	if l.PortEnd != 0 && l.PortEnd != l.Port {
		port += "-" + strconv.Itoa(int(l.PortEnd))
	}
	return l.Protocol + "://" + host + ":" + port
}

// ParseListen parses an L4 listen address (see Listen for the forms).
func ParseListen(s string) (Listen, error) {
	l, err := parseListen(s)
	if err != nil {
		return Listen{}, fmt.Errorf("listen address %q: %w (want e.g. tcp://127.0.0.1:7000 or tcp://127.0.1.0/24:7000-7099)", s, err)
	}
	return l, nil
}

func parseListen(s string) (Listen, error) {
	proto, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Listen{}, errors.New("no tcp:// scheme")
	}
	switch proto {
	case "tcp":
	case "udp":
		return Listen{}, errors.New("udp is not supported yet")
	default:
		return Listen{}, fmt.Errorf("scheme %q is not tcp", proto)
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return Listen{}, errors.New("no port")
	}
	host, ports := rest[:i], rest[i+1:]
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") {
		return Listen{}, fmt.Errorf("unbalanced brackets in %q", host)
	}
	bracketed := strings.HasPrefix(host, "[")
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	l := Listen{Protocol: proto}
	if strings.Contains(host, "/") {
		p, err := netip.ParsePrefix(host)
		if err != nil {
			// netip's error quotes the input again, and parts of it.
			return Listen{}, errors.New("not an IP prefix (address/bits)")
		}
		if p.Masked() != p {
			return Listen{}, fmt.Errorf("prefix %s has host bits set (use %s)", p, p.Masked())
		}
		l.Prefix = p
	} else {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return Listen{}, errors.New("not an IP address")
		}
		l.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	addr := l.Prefix.Addr()
	switch {
	case addr.Zone() != "":
		return Listen{}, errors.New("zones are not supported")
	case addr.Is4In6():
		return Listen{}, errors.New("use the IPv4 form of an IPv4-mapped address")
	case addr.Is6() && !bracketed:
		return Listen{}, errors.New("put an IPv6 address in brackets: tcp://[::1]:7000")
	case addr.Is4() && bracketed:
		return Listen{}, errors.New("brackets are for IPv6 addresses")
	case addr.IsUnspecified():
		return Listen{}, errors.New("the unspecified address is not an L4 address; name the address clients connect to")
	case l.PerInstance() && l.Prefix.Bits() >= addr.BitLen()-1:
		return Listen{}, fmt.Errorf("prefix %s has too few addresses for one per instance", l.Prefix)
	}
	first, last, isRange := strings.Cut(ports, "-")
	p, err := parsePort(first)
	if err != nil {
		return Listen{}, err
	}
	l.Port = p
	if isRange {
		e, err := parsePort(last)
		if err != nil {
			return Listen{}, err
		}
		if e < p {
			return Listen{}, fmt.Errorf("port range %d-%d ends before it starts", p, e)
		}
		if e != p {
			l.PortEnd = e
		}
	}
	return l, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not a number within 1..65535", s)
	}
	return uint16(n), nil
}

type overlap struct{ key, msg string }

// listenOverlaps finds listen addresses that two services (or one service
// twice) claim: a connection must have one destination.
func listenOverlaps(c *Config) []overlap {
	type claim struct {
		svc string
		l   Listen
	}
	var claims []claim
	var out []overlap
	for _, name := range c.ServiceNames() {
		for _, s := range c.Services[name].Listen {
			l, err := ParseListen(s)
			if err != nil {
				continue // reported by validate
			}
			for _, o := range claims {
				if o.l.Overlaps(l) {
					out = append(out, overlap{"service." + name + ".listen",
						fmt.Sprintf("%s overlaps %s of service.%s", l, o.l, o.svc)})
				}
			}
			claims = append(claims, claim{name, l})
		}
	}
	return out
}
