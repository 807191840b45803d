package dispatch

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// MaxLabelLen is the longest destination label, in bytes.
const MaxLabelLen = 63

// Binding steers connections for an address prefix and port (range) to the
// socket registered under Label. A prefix is a single map entry however wide;
// a port range costs one entry per port.
type Binding struct {
	// Label names the destination, for ten an instance ("api:prod").
	Label string
	// Protocol is "tcp" or "udp".
	Protocol string
	// Prefix is the destination address range, e.g. 127.0.1.0/24 or
	// 127.0.1.5/32. It must have no host bits set.
	Prefix netip.Prefix
	// Port is the destination port, or the first of a range; 0 means every
	// port. A binding for the exact port wins over a wildcard one unless the
	// wildcard's prefix is longer.
	Port uint16
	// PortEnd is the last port of a range (inclusive); 0 means just Port.
	PortEnd uint16
}

// String renders the binding as "tcp 127.0.1.0/24:7000-7999 api:prod".
func (b Binding) String() string {
	port := strconv.Itoa(int(b.Port))
	if b.PortEnd != 0 && b.PortEnd != b.Port {
		port += "-" + strconv.Itoa(int(b.PortEnd))
	}
	return fmt.Sprintf("%s %s:%s %s", b.Protocol, b.Prefix, port, b.Label)
}

// lastPort is the last port the binding covers.
func (b Binding) lastPort() uint16 {
	if b.PortEnd == 0 {
		return b.Port
	}
	return b.PortEnd
}

// validate checks the binding without touching the kernel.
func (b Binding) validate() error {
	var errs []error
	if err := validateLabel(b.Label); err != nil {
		errs = append(errs, err)
	}
	if _, err := protocolNumber(b.Protocol); err != nil {
		errs = append(errs, err)
	}
	switch {
	case !b.Prefix.IsValid():
		errs = append(errs, errors.New("missing or invalid prefix"))
	case b.Prefix.Addr().Zone() != "":
		errs = append(errs, fmt.Errorf("prefix %s has a zone", b.Prefix))
	case b.Prefix.Masked() != b.Prefix:
		errs = append(errs, fmt.Errorf("prefix %s has host bits set (use %s)", b.Prefix, b.Prefix.Masked()))
	}
	switch {
	case b.Port == 0 && b.PortEnd != 0:
		errs = append(errs, fmt.Errorf("port range 0-%d: port 0 means every port and has no range", b.PortEnd))
	case b.PortEnd != 0 && b.PortEnd < b.Port:
		errs = append(errs, fmt.Errorf("port range %d-%d ends before it starts", b.Port, b.PortEnd))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("binding %s: %w", b, err)
	}
	return nil
}

func validateLabel(label string) error {
	switch {
	case label == "":
		return errors.New("empty label")
	case len(label) > MaxLabelLen:
		return fmt.Errorf("label %q longer than %d bytes", label, MaxLabelLen)
	}
	for i := range len(label) {
		if label[i] == 0 {
			return fmt.Errorf("label %q contains NUL", label)
		}
	}
	return nil
}

// IP protocol numbers.
const (
	protoTCP = 6
	protoUDP = 17
)

func protocolNumber(name string) (uint8, error) {
	switch name {
	case "tcp":
		return protoTCP, nil
	case "udp":
		return protoUDP, nil
	}
	return 0, fmt.Errorf("protocol %q is not tcp or udp", name)
}

func protocolName(n uint8) string {
	switch n {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	}
	return "ip" + strconv.Itoa(int(n))
}

// mergeBindings turns one-port bindings back into the ranges they were
// added as: consecutive ports of one label, protocol and prefix merge.
func mergeBindings(single []Binding) []Binding {
	slices.SortFunc(single, func(a, b Binding) int {
		return cmp.Or(
			cmp.Compare(a.Label, b.Label),
			cmp.Compare(a.Protocol, b.Protocol),
			a.Prefix.Addr().Compare(b.Prefix.Addr()),
			cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
			cmp.Compare(a.Port, b.Port),
		)
	})
	var out []Binding
	for _, b := range single {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.Label == b.Label && last.Protocol == b.Protocol && last.Prefix == b.Prefix &&
				last.Port != 0 && b.Port != 0 && uint32(last.lastPort())+1 == uint32(b.Port) {
				last.PortEnd = b.Port
				continue
			}
		}
		out = append(out, b)
	}
	return out
}

// Destination is a label's socket for one family and protocol, with what the
// sk_lookup program did for it.
type Destination struct {
	Label string
	// Network is "tcp4", "tcp6", "udp4" or "udp6".
	Network string
	// Socket is the cookie of the registered socket, 0 when none is.
	Socket uint64
	// Lookups counts connections that matched a binding of the destination,
	// Misses those refused because no socket was registered, Errors those
	// refused because the kernel would not assign the socket (wrong family,
	// not listening).
	Lookups, Misses, Errors uint64
}

func sortDestinations(ds []Destination) {
	slices.SortFunc(ds, func(a, b Destination) int {
		return cmp.Or(cmp.Compare(a.Label, b.Label), cmp.Compare(a.Network, b.Network))
	})
}
