package dispatch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Dispatcher steers L4 connections in one network namespace straight to
// registered listening sockets with an sk_lookup program: the connection
// lands in the socket's accept queue as if it had been addressed to it, and
// the application sees the client's own address as the peer. No process
// copies a byte, and the socket's owner (systemd, for a socket-activated
// instance) is woken by the kernel as for any connection.
//
// With a pin directory the program's link and maps are pinned under
// pinDir/dispatch-<netns inode>: dispatching goes on while no process holds a
// Dispatcher, and LoadDispatcher finds the bindings and sockets again. One
// process at a time may change a pinned dispatcher.
type Dispatcher struct {
	log  *slog.Logger
	objs dispatchObjects
	link link.Link
	dir  string // pin directory, "" when not pinned

	mu sync.Mutex // serialises changes to bindings and destinations
}

// LoadDispatcher attaches the sk_lookup program to the network namespace at
// netnsPath (such as /proc/self/ns/net or /run/netns/NAME). With pinDir ""
// nothing is pinned and Close detaches the program. Otherwise pinDir must be
// on a bpf filesystem (ten uses /sys/fs/bpf/tenement); a dispatcher pinned
// there for the same namespace is reopened with its bindings and sockets and
// switched to the program loaded now.
func LoadDispatcher(netnsPath, pinDir string, log *slog.Logger) (*Dispatcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d, err := loadDispatcher(netnsPath, pinDir, log, 0)
	if err != nil {
		return nil, fmt.Errorf("load dispatcher for %s: %w", netnsPath, err)
	}
	return d, nil
}

// loadDispatcher is LoadDispatcher; maxBindings other than 0 shrinks the
// bindings trie, so that a test can fill it and see what a failed update
// leaves behind.
func loadDispatcher(netnsPath, pinDir string, log *slog.Logger, maxBindings uint32) (*Dispatcher, error) {
	ns, err := os.Open(netnsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(ns.Fd()), &fs); err != nil {
		return nil, err
	}
	if fs.Type != unix.NSFS_MAGIC {
		return nil, errors.New("not a namespace file")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &st); err != nil {
		return nil, err
	}

	spec, err := loadDispatch()
	if err != nil {
		return nil, err
	}
	if maxBindings != 0 {
		spec.Maps["bindings"].MaxEntries = maxBindings
	}
	d := &Dispatcher{log: log}
	var opts ebpf.CollectionOptions
	var pinned link.Link
	if pinDir != "" {
		d.dir = filepath.Join(pinDir, fmt.Sprintf("dispatch-%d", st.Ino))
		if pinned, err = d.pinnedLink(st.Ino); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(d.dir, 0o700); err != nil {
			return nil, err
		}
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinByName
		}
		opts.Maps.PinPath = d.dir
	}
	if err := spec.LoadAndAssign(&d.objs, &opts); err != nil {
		if pinned != nil {
			pinned.Close()
		}
		return nil, err
	}

	if pinned != nil {
		if err := pinned.Update(d.objs.Dispatch); err != nil {
			pinned.Close()
			d.objs.Close()
			return nil, fmt.Errorf("update pinned link: %w", err)
		}
		d.link = pinned
		log.Debug("dispatcher reopened", "pins", d.dir)
		return d, nil
	}
	l, err := link.AttachNetNs(int(ns.Fd()), d.objs.Dispatch)
	if err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("attach sk_lookup: %w", err)
	}
	if d.dir != "" {
		if err := l.Pin(filepath.Join(d.dir, "link")); err != nil {
			l.Close()
			d.objs.Close()
			return nil, fmt.Errorf("pin link: %w", err)
		}
	}
	d.link = l
	log.Debug("dispatcher attached", "netns", netnsPath, "pins", d.dir)
	return d, nil
}

// pinnedLink opens the pinned link of the dispatcher, if there is one that is
// still attached to the namespace. A namespace that went away leaves a
// defunct link; its pins are stale (a new namespace can reuse the inode
// number) and are removed.
func (d *Dispatcher) pinnedLink(netnsIno uint64) (link.Link, error) {
	l, err := link.LoadPinnedLink(filepath.Join(d.dir, "link"), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err == nil {
		info, ierr := l.Info()
		if ierr == nil && info.NetNs() != nil && uint64(info.NetNs().NetnsInode) == netnsIno {
			return l, nil
		}
		l.Close()
	}
	d.log.Info("dispatcher: removing stale pins", "pins", d.dir, "err", err)
	if err := os.RemoveAll(d.dir); err != nil {
		return nil, err
	}
	return nil, nil
}

// destinationKey names a destination: label, address family, protocol.
func destinationKey(label string, family, protocol uint8) dispatchDestinationKey {
	k := dispatchDestinationKey{Family: family, Protocol: protocol}
	copy(k.Label[:], label)
	return k
}

func (k dispatchDestinationKey) label() string {
	l, _, _ := bytes.Cut(k.Label[:], []byte{0})
	return string(l)
}

func (k dispatchDestinationKey) network() string {
	n := protocolName(k.Protocol)
	if k.Family == unix.AF_INET6 {
		return n + "6"
	}
	return n + "4"
}

// destination returns the id of a destination, allocating the lowest free
// one when create is set.
func (d *Dispatcher) destination(key dispatchDestinationKey, create bool) (uint32, bool, error) {
	var id uint32
	err := d.objs.Destinations.Lookup(&key, &id)
	if err == nil {
		return id, true, nil
	}
	if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, false, err
	}
	if !create {
		return 0, false, nil
	}
	used := make(map[uint32]bool)
	var (
		k dispatchDestinationKey
		v uint32
	)
	it := d.objs.Destinations.Iterate()
	for it.Next(&k, &v) {
		used[v] = true
	}
	if err := it.Err(); err != nil {
		return 0, false, err
	}
	for id = 0; used[id]; id++ {
	}
	if id >= d.objs.Sockets.MaxEntries() {
		return 0, false, fmt.Errorf("all %d destinations in use", id)
	}
	if err := d.objs.DestinationMetrics.Put(id, dispatchDestinationMetrics{}); err != nil {
		return 0, false, err
	}
	if err := d.objs.Destinations.Update(&key, id, ebpf.UpdateNoExist); err != nil {
		return 0, false, err
	}
	return id, true, nil
}

// bindingKeys returns the trie keys of a valid binding, one per port, and the
// destination key it points to.
func bindingKeys(b Binding) ([]dispatchBindingKey, dispatchDestinationKey, uint32) {
	proto, _ := protocolNumber(b.Protocol)
	family := uint8(unix.AF_INET6)
	addrBits := b.Prefix.Bits()
	if b.Prefix.Addr().Is4() {
		family = unix.AF_INET
		addrBits += 96 // IPv4-mapped IPv6
	}
	base := dispatchBindingKey{
		Prefixlen: uint32(8 + 16 + addrBits),
		Protocol:  proto,
		Addr:      b.Prefix.Addr().As16(),
	}
	var keys []dispatchBindingKey
	for p := uint32(b.Port); p <= uint32(b.lastPort()); p++ {
		k := base
		k.Port = htons(uint16(p))
		keys = append(keys, k)
	}
	return keys, destinationKey(b.Label, family, proto), uint32(addrBits)
}

// binding decodes a trie key into a one-port binding.
func (k dispatchBindingKey) binding(label string) Binding {
	addr := netip.AddrFrom16(k.Addr)
	bits := int(k.Prefixlen) - 8 - 16
	if addr.Is4In6() && bits >= 96 {
		addr, bits = addr.Unmap(), bits-96
	}
	return Binding{
		Label:    label,
		Protocol: protocolName(k.Protocol),
		Prefix:   netip.PrefixFrom(addr, bits),
		Port:     ntohs(k.Port),
	}
}

// htons stores a port in the key the way the C side reads it: big-endian
// bytes in a __be16.
func htons(p uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, p))
}

func ntohs(p uint16) uint16 {
	return binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, p))
}

// AddBinding steers connections matching b to the socket registered for
// b.Label (with RegisterSocket, before or after). Adding a binding that
// exists already for the same label does nothing; a binding that overlaps one
// of another label exactly (same protocol, prefix and port) is an error and
// changes nothing.
func (d *Dispatcher) AddBinding(b Binding) error {
	if err := b.validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	keys, dest, addrBits := bindingKeys(b)
	labels, err := d.labels()
	if err != nil {
		return fmt.Errorf("add binding %s: %w", b, err)
	}
	var v dispatchBindingValue
	// had marks the keys the label owns already: a failed add must leave
	// them in place.
	had := make([]bool, len(keys))
	for i, k := range keys {
		err := d.objs.Bindings.Lookup(&k, &v)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("add binding %s: %w", b, err)
		}
		// Lookup finds the longest prefix; only the same prefix is this key.
		if v.Prefixlen != addrBits {
			continue
		}
		if owner := labels[v.Destination]; owner.label() != b.Label {
			return fmt.Errorf("add binding %s: %s is bound to %q", b, k.binding(owner.label()).String(), owner.label())
		}
		had[i] = true
	}
	id, _, err := d.destination(dest, true)
	if err != nil {
		return fmt.Errorf("add binding %s: %w", b, err)
	}
	v = dispatchBindingValue{Destination: id, Prefixlen: addrBits}
	for i, k := range keys {
		if err := d.objs.Bindings.Put(&k, &v); err != nil {
			return fmt.Errorf("add binding %s: %w", b, errors.Join(err, d.rollback(keys[:i], had, dest)))
		}
	}
	d.log.Debug("binding added", "binding", b.String(), "destination", id)
	return nil
}

// RemoveBinding removes what AddBinding(b) added: the ports of b that are
// bound to b.Label. It is an error when none is.
func (d *Dispatcher) RemoveBinding(b Binding) error {
	if err := b.validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	keys, dest, addrBits := bindingKeys(b)
	id, ok, err := d.destination(dest, false)
	if err != nil {
		return fmt.Errorf("remove binding %s: %w", b, err)
	}
	removed := 0
	var v dispatchBindingValue
	for _, k := range keys {
		if !ok {
			break
		}
		if err := d.objs.Bindings.Lookup(&k, &v); err != nil || v.Destination != id || v.Prefixlen != addrBits {
			continue
		}
		if err := d.objs.Bindings.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove binding %s: %w", b, err)
		}
		removed++
	}
	if removed == 0 {
		return fmt.Errorf("remove binding %s: %w", b, os.ErrNotExist)
	}
	if err := d.collect(dest); err != nil {
		return fmt.Errorf("remove binding %s: %w", b, err)
	}
	return nil
}

// rollback deletes the keys a failed AddBinding put, except those the label
// owned before (had), and collects the destination when nothing uses it.
// Callers hold d.mu.
func (d *Dispatcher) rollback(put []dispatchBindingKey, had []bool, dest dispatchDestinationKey) error {
	var errs []error
	for i, k := range put {
		if had[i] {
			continue
		}
		if err := d.objs.Bindings.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("undo %s: %w", k.binding(dest.label()), err))
		}
	}
	if err := d.collect(dest); err != nil {
		errs = append(errs, fmt.Errorf("undo: %w", err))
	}
	return errors.Join(errs...)
}

// collect forgets a destination that has no binding and no socket left.
func (d *Dispatcher) collect(dest dispatchDestinationKey) error {
	id, ok, err := d.destination(dest, false)
	if err != nil || !ok {
		return err
	}
	var cookie uint64
	if err := d.objs.Sockets.Lookup(id, &cookie); err == nil {
		return nil
	}
	var (
		k dispatchBindingKey
		v dispatchBindingValue
	)
	it := d.objs.Bindings.Iterate()
	for it.Next(&k, &v) {
		if v.Destination == id {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	if err := d.objs.Destinations.Delete(&dest); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	// The id may be given to another destination next.
	return d.deleteAppSocket(id)
}

// deleteAppSocket empties a destination's app socket slot (a sockmap
// refuses to delete an empty slot with EINVAL, so it looks first).
func (d *Dispatcher) deleteAppSocket(id uint32) error {
	var cookie uint64
	if err := d.objs.AppSockets.Lookup(id, &cookie); err != nil {
		return nil
	}
	if err := d.objs.AppSockets.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("app sockmap: %w", err)
	}
	return nil
}

// labels maps destination ids to their keys.
func (d *Dispatcher) labels() (map[uint32]dispatchDestinationKey, error) {
	m := make(map[uint32]dispatchDestinationKey)
	var (
		k dispatchDestinationKey
		v uint32
	)
	it := d.objs.Destinations.Iterate()
	for it.Next(&k, &v) {
		m[v] = k
	}
	return m, it.Err()
}

// Bindings returns the bindings, with consecutive ports of one label,
// protocol and prefix merged into ranges.
func (d *Dispatcher) Bindings() ([]Binding, error) {
	labels, err := d.labels()
	if err != nil {
		return nil, fmt.Errorf("list bindings: %w", err)
	}
	var (
		single []Binding
		k      dispatchBindingKey
		v      dispatchBindingValue
	)
	it := d.objs.Bindings.Iterate()
	for it.Next(&k, &v) {
		single = append(single, k.binding(labels[v.Destination].label()))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list bindings: %w", err)
	}
	return mergeBindings(single), nil
}

// RegisterSocket makes conn the destination of label's bindings for conn's
// address family and protocol, replacing the socket registered before. conn
// must be a listening TCP socket or a UDP socket (an *os.File, a
// *net.TCPListener, a *net.UDPConn), not MPTCP, which Go's net.Listen
// creates by default on kernels that have it. The dispatcher does not
// keep it open: the kernel drops it from the dispatcher when its last file is
// closed, so whoever owns the socket (systemd) keeps it alive, and the caller
// may close conn afterwards.
func (d *Dispatcher) RegisterSocket(label string, conn syscall.Conn) error {
	return d.onFD("register socket", label, conn, d.registerFD)
}

// onFD checks label and runs register on conn's descriptor under d.mu;
// its errors say what was done (op) for which label.
func (d *Dispatcher) onFD(op, label string, conn syscall.Conn, register func(label string, fd int) error) error {
	if err := validateLabel(label); err != nil {
		return fmt.Errorf("%s for %q: %w", op, label, err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("%s for %q: %w", op, label, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var opErr error
	err = raw.Control(func(fd uintptr) { opErr = register(label, int(fd)) })
	if err := errors.Join(err, opErr); err != nil {
		return fmt.Errorf("%s for %q: %w", op, label, err)
	}
	return nil
}

func (d *Dispatcher) registerFD(label string, fd int) error {
	family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("not a socket: %w", err)
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return err
	}
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return fmt.Errorf("socket family %d is not IPv4 or IPv6", family)
	}
	switch proto {
	case unix.IPPROTO_TCP:
		if listening, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || listening == 0 {
			return errors.New("TCP socket is not listening")
		}
	case unix.IPPROTO_UDP:
	case unix.IPPROTO_MPTCP:
		// The kernel keeps only TCP and UDP sockets in a sockmap (EOPNOTSUPP).
		// Go listens with MPTCP by default since 1.24 where the kernel has it.
		return errors.New("MPTCP sockets cannot be dispatched; listen with plain TCP " +
			"(net.ListenConfig.SetMultipathTCP(false) or GODEBUG=multipathtcp=0)")
	default:
		return fmt.Errorf("socket protocol %d is not TCP or UDP", proto)
	}
	key := destinationKey(label, uint8(family), uint8(proto))
	id, _, err := d.destination(key, true)
	if err != nil {
		return err
	}
	if err := d.objs.Sockets.Put(id, uint64(fd)); err != nil {
		if cerr := d.collect(key); cerr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", cerr))
		}
		return fmt.Errorf("sockmap: %w", err)
	}
	d.log.Debug("socket registered", "label", label, "network", key.network(), "destination", id)
	return nil
}

// RegisterAppSocket makes conn, the listening TCP socket of an app that
// binds its own PORT, the first choice for label's TCP destinations that
// have a socket registered (RegisterSocket, the systemd-held one): new
// connections land in the app's accept queue, with no relay, and the app
// sees the client's address. The registered socket stays the fallback, and
// takes connections again when the app's socket is closed (the kernel drops
// it from the map) or cannot take one (an IPv4 socket, an IPv6 connection).
// An IPv6 socket that is not IPV6_V6ONLY serves the IPv4 destinations too.
// As with RegisterSocket, the caller may close conn afterwards.
func (d *Dispatcher) RegisterAppSocket(label string, conn syscall.Conn) error {
	return d.onFD("register app socket", label, conn, d.registerAppFD)
}

func (d *Dispatcher) registerAppFD(label string, fd int) error {
	family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("not a socket: %w", err)
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return err
	}
	if proto != unix.IPPROTO_TCP {
		return fmt.Errorf("socket protocol %d is not TCP", proto)
	}
	if listening, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || listening == 0 {
		return errors.New("TCP socket is not listening")
	}
	families := map[uint8]bool{}
	switch family {
	case unix.AF_INET:
		families[unix.AF_INET] = true
	case unix.AF_INET6:
		families[unix.AF_INET6] = true
		if only, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err == nil && only == 0 {
			families[unix.AF_INET] = true
		}
	default:
		return fmt.Errorf("socket family %d is not IPv4 or IPv6", family)
	}
	labels, err := d.labels()
	if err != nil {
		return err
	}
	n := 0
	for id, k := range labels {
		if k.label() != label || k.Protocol != unix.IPPROTO_TCP || !families[k.Family] {
			continue
		}
		var cookie uint64
		if err := d.objs.Sockets.Lookup(id, &cookie); err != nil {
			continue // no fallback: nothing to put the app's socket before
		}
		if err := d.objs.AppSockets.Put(id, uint64(fd)); err != nil {
			return fmt.Errorf("app sockmap: %w", err)
		}
		d.log.Debug("app socket registered", "label", label, "network", k.network(), "destination", id)
		n++
	}
	if n == 0 {
		return fmt.Errorf("no TCP destination of the socket's family with a registered socket: %w", os.ErrNotExist)
	}
	return nil
}

// AppSocket returns the cookie of the app socket registered for label's
// destination of network ("tcp4", "tcp6"), 0 when none is.
func (d *Dispatcher) AppSocket(label, network string) (uint64, error) {
	labels, err := d.labels()
	if err != nil {
		return 0, err
	}
	for id, k := range labels {
		if k.label() == label && k.network() == network {
			var cookie uint64
			if err := d.objs.AppSockets.Lookup(id, &cookie); err == nil {
				return cookie, nil
			}
			return 0, nil
		}
	}
	return 0, nil
}

// UnregisterSocket removes label's sockets (app sockets too); connections for its bindings are
// refused until a socket is registered again.
func (d *Dispatcher) UnregisterSocket(label string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	labels, err := d.labels()
	if err != nil {
		return fmt.Errorf("unregister sockets of %q: %w", label, err)
	}
	for id, k := range labels {
		if k.label() != label {
			continue
		}
		if err := d.objs.Sockets.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("unregister sockets of %q: %w", label, err)
		}
		if err := d.deleteAppSocket(id); err != nil {
			return fmt.Errorf("unregister sockets of %q: %w", label, err)
		}
		if err := d.collect(k); err != nil {
			return fmt.Errorf("unregister sockets of %q: %w", label, err)
		}
	}
	return nil
}

// Destinations lists the destinations with their sockets and counters.
func (d *Dispatcher) Destinations() ([]Destination, error) {
	labels, err := d.labels()
	if err != nil {
		return nil, fmt.Errorf("list destinations: %w", err)
	}
	var out []Destination
	for id, k := range labels {
		dst := Destination{Label: k.label(), Network: k.network()}
		var cookie uint64
		if err := d.objs.Sockets.Lookup(id, &cookie); err == nil {
			dst.Socket = cookie
		}
		var m dispatchDestinationMetrics
		if err := d.objs.DestinationMetrics.Lookup(id, &m); err != nil {
			return nil, fmt.Errorf("list destinations: %w", err)
		}
		dst.Lookups, dst.Misses, dst.Errors = m.Lookups, m.Misses, m.Errors
		out = append(out, dst)
	}
	sortDestinations(out)
	return out, nil
}

// Close releases the Dispatcher. A pinned dispatcher stays attached and keeps
// dispatching; without pins the program is detached.
func (d *Dispatcher) Close() error {
	err := errors.Join(d.link.Close(), d.objs.Close())
	if err != nil {
		return fmt.Errorf("close dispatcher: %w", err)
	}
	return nil
}

// Unload detaches the program, removes the pinned state and closes the
// Dispatcher.
func (d *Dispatcher) Unload() error {
	var errs []error
	if d.dir != "" {
		errs = append(errs, d.link.Unpin())
	}
	errs = append(errs, d.Close())
	if d.dir != "" {
		errs = append(errs, os.RemoveAll(d.dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unload dispatcher: %w", err)
	}
	return nil
}
