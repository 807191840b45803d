package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenhq/ten/config"

	"github.com/tenhq/ten/internal/relay"
	"github.com/tenhq/ten/router/addrcap"
)

// MaxProxyPorts bounds the ports the proxy listens on per address: without
// sk_lookup every port is a socket of ten's.
const MaxProxyPorts = 256

// Proxy serves L4 addresses in user space, for hosts where the sk_lookup
// dispatcher cannot be used. It listens on each address and port and splices
// every connection to the instance's internal socket, which systemd holds,
// so a connection still wakes a sleeping instance. Unlike sk_lookup it is a
// process in the path: the app sees the proxy as its peer, and while ten is
// down nobody listens on the addresses.
type Proxy struct {
	log *slog.Logger
	// cap bounds the connections one client address holds open through
	// the proxy, over all its addresses: each costs ten two descriptors.
	cap *addrcap.Cap

	mu     sync.Mutex
	routes map[string]*route
}

type route struct {
	lns    []net.Listener
	target map[bool]string // by "is IPv6": the internal socket to dial
	open   atomic.Int64    // connections being relayed
	last   atomic.Int64    // unix nanos of the last connection's end or start
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// NewProxy returns an empty proxy whose client addresses may each hold
// maxPerAddr connections open (settings.max_conns_per_address; 0: no
// bound); one over it is closed at once.
func NewProxy(log *slog.Logger, maxPerAddr int) *Proxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Proxy{log: log, cap: addrcap.New(maxPerAddr), routes: map[string]*route{}}
}

// Add listens on addrs (single addresses, as Assign returns them) for name
// and relays connections to its internal sockets (InternalSockets). Adding a
// name again replaces its route. It listens on everything or nothing.
func (p *Proxy) Add(name string, addrs []config.Listen, internal []string) error {
	r := &route{target: map[bool]string{}}
	for _, s := range internal {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return fmt.Errorf("proxy %s: internal socket %q: %w", name, s, err)
		}
		r.target[ap.Addr().Is6()] = s
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.last.Store(time.Now().UnixNano())
	for _, a := range addrs {
		if n := int(a.LastPort()) - int(a.Port) + 1; n > MaxProxyPorts {
			r.close()
			return fmt.Errorf("proxy %s: %s has %d ports; without BPF ten listens on each and allows at most %d per address", name, a, n, MaxProxyPorts)
		}
		target, ok := r.target[a.Prefix.Addr().Is6()]
		if !ok {
			r.close()
			return fmt.Errorf("proxy %s: no internal socket of the family of %s", name, a)
		}
		for port := uint32(a.Port); port <= uint32(a.LastPort()); port++ {
			addr := netip.AddrPortFrom(a.Prefix.Addr(), uint16(port)).String()
			var lc net.ListenConfig
			lc.SetMultipathTCP(false)
			ln, err := lc.Listen(r.ctx, "tcp", addr)
			if err != nil {
				r.close()
				return fmt.Errorf("proxy %s: %w", name, err)
			}
			r.lns = append(r.lns, ln)
			r.wg.Add(1)
			go p.serve(name, r, ln, target)
		}
	}
	p.mu.Lock()
	old := p.routes[name]
	p.routes[name] = r
	p.mu.Unlock()
	if old != nil {
		old.close()
	}
	p.log.Debug("proxy listening", "instance", name, "addresses", Strings(addrs))
	return nil
}

func (p *Proxy) serve(name string, r *route, ln net.Listener, target string) {
	defer r.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Warn("proxy accept", "instance", name, "listen", ln.Addr().String(), "err", err)
			}
			return
		}
		ac, ok := p.cap.Admit(c)
		if !ok {
			p.log.Debug("proxy: too many connections from one address", "instance", name, "from", addrcap.Name(addrcap.Key(c.RemoteAddr())), "max_conns_per_address", p.cap.Limit())
			c.Close()
			continue
		}
		r.open.Add(1)
		r.last.Store(time.Now().UnixNano())
		go func() {
			defer func() {
				r.last.Store(time.Now().UnixNano())
				r.open.Add(-1)
				ac.Close() // gives the place back; c itself is closed by forward
			}()
			// c, not its counted wrapper, is relayed: splice(2) and
			// CloseWrite need the *net.TCPConn.
			if err := forward(r.ctx, c, target); err != nil {
				p.log.Debug("proxy relay", "instance", name, "err", err)
			}
		}()
	}
}

// forward copies both ways between c and a new connection to target until
// both directions are done; on Linux io.Copy between TCP connections uses
// splice(2), so the bytes do not pass through user space.
func forward(ctx context.Context, c net.Conn, target string) error {
	defer c.Close()
	var d net.Dialer
	d.SetMultipathTCP(false)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	u, err := d.DialContext(dctx, "tcp", target)
	cancel()
	if err != nil {
		return err
	}
	defer u.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); u.Close() })
	defer stop()
	return relay.Both(c, u)
}

// Remove stops listening for name and ends its connections.
func (p *Proxy) Remove(name string) {
	p.mu.Lock()
	r := p.routes[name]
	delete(p.routes, name)
	p.mu.Unlock()
	if r != nil {
		r.close()
	}
}

// Activity reports when name's proxied traffic was last seen: now while a
// connection is open, else when the last one ended.
func (p *Proxy) Activity(name string) (time.Time, bool) {
	p.mu.Lock()
	r := p.routes[name]
	p.mu.Unlock()
	if r == nil {
		return time.Time{}, false
	}
	if r.open.Load() > 0 {
		return time.Now(), true
	}
	return time.Unix(0, r.last.Load()), true
}

// Close stops every route.
func (p *Proxy) Close() {
	p.mu.Lock()
	rs := p.routes
	p.routes = map[string]*route{}
	p.mu.Unlock()
	for _, r := range rs {
		r.close()
	}
}

func (r *route) close() {
	r.cancel()
	for _, ln := range r.lns {
		ln.Close()
	}
	r.wg.Wait()
}
