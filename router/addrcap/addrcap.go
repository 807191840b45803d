// Package addrcap bounds the connections one client address holds open on
// ten's listeners (settings.max_conns_per_address), so that one client
// cannot take every descriptor ten has from the other clients: the plain
// listener's fast path admits through it, and the HTTPS listeners are
// wrapped in its Listener. An IPv6 client counts by its /64, the network a
// single host or site is given: one client can pick any of its 2^64
// addresses.
//
// A proxy in front of ten (settings.trusted_proxies, Cap.Trust) carries
// many clients over its connections: they are not counted against its
// address, which one client behind it could otherwise fill for all the
// others. Each request on them counts instead, while it runs (an upgraded
// connection for as long as it is open), against the client the proxy
// names in X-Forwarded-For (Cap.Request). The proxy's own connections are
// bounded apart, at ProxyFactor times the cap: whatever else shares its
// address (a tenant on the proxy's host) cannot hold every descriptor ten
// has.
package addrcap

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/tenhq/ten/internal/forwarded"
)

// Cap counts the open connections of each client address.
type Cap struct {
	limit int
	// trusted reports a proxy in front of ten by its IP (Trust).
	trusted func(ip string) bool
	// trustReq, when set, decides for one request of a trusted address
	// whether its X-Forwarded-For names its client (TrustRequests).
	trustReq func(r *http.Request) bool

	mu sync.Mutex // mu guards the following
	n  map[netip.Prefix]int
	// proxies counts the trusted proxies' own connections, apart from
	// their clients' places in n.
	proxies map[netip.Prefix]int
}

// ProxyFactor bounds a trusted proxy's own connections (Trust) at this
// many times the cap: 32,768 at the default of 512, room for a proxy's
// keep-alive pool and its clients' WebSockets and long requests.
const ProxyFactor = 64

// Trust makes c admit the connections of the proxies trusted reports
// (settings.trusted_proxies) without counting them, and count their
// requests against the clients they name instead (Request, Streams). It
// is set before c is used; nil trusts no one.
func (c *Cap) Trust(trusted func(ip string) bool) {
	if c != nil {
		c.trusted = trusted
	}
}

// TrustRequests narrows Trust for Streams: a request of a trusted
// address counts against the client its X-Forwarded-For names only when
// f says so (a fleet peer's request carries the fleet's token), and
// against the address itself otherwise. It is set before c is used; nil
// takes every trusted address's X-Forwarded-For.
func (c *Cap) TrustRequests(f func(r *http.Request) bool) {
	if c != nil {
		c.trustReq = f
	}
}

// trustedPeer reports whether the peer at a (a TCP address; any other is
// not) is a proxy c trusts.
func (c *Cap) trustedPeer(a net.Addr) bool {
	if c == nil || c.trusted == nil {
		return false
	}
	_, ok := a.(*net.TCPAddr)
	return ok && c.trusted(forwarded.Host(a.String()))
}

// Request takes a place, for one request on a trusted proxy's connection,
// of the client the proxy names: remoteAddr is the proxy's HOST:PORT (or
// HOST) and xff the request's X-Forwarded-For values (forwarded.Client).
// It returns the function that gives the place back, or the client's name
// and false when the client holds Limit places already. A Cap without a
// limit takes nothing.
func (c *Cap) Request(remoteAddr string, xff []string) (release func(), client string, ok bool) {
	if c == nil || c.limit <= 0 {
		return func() {}, "", true
	}
	key := netip.Prefix{}
	if ip, err := netip.ParseAddr(forwarded.Client(remoteAddr, xff, c.trusted)); err == nil {
		key = KeyOf(ip)
	}
	release, ok = c.take(key)
	return release, Name(key), ok
}

// New returns a Cap of limit connections per address; limit <= 0 admits
// everything and counts nothing.
func New(limit int) *Cap { return &Cap{limit: limit} }

// Limit is the cap (0 or less: none).
func (c *Cap) Limit() int { return c.limit }

// Key is what a connection counts against: its remote IPv4 address (an
// IPv4-mapped IPv6 one as the IPv4 one), or the /64 of its IPv6 address.
// Non-TCP peers (a unix socket) share the zero key.
func Key(a net.Addr) netip.Prefix {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}
	}
	ip, _ := netip.AddrFromSlice(ta.IP)
	return KeyOf(ip)
}

// KeyOf is Key for an address.
func KeyOf(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// Name is how messages name a key: the IPv4 address, or the IPv6 network.
func Name(k netip.Prefix) string {
	switch {
	case !k.IsValid():
		return "a local peer"
	case k.Addr().Is4():
		return k.Addr().String()
	default:
		return k.String()
	}
}

// Admit counts conn against its address and returns it wrapped in a *Conn
// whose Close gives the place back, or reports false when the address
// already holds Limit connections (conn is then the caller's to refuse and
// close). A nil Cap or one without a limit returns conn as it is.
//
// A trusted proxy's connection counts apart, against ProxyFactor times
// Limit (LimitOf).
func (c *Cap) Admit(conn net.Conn) (net.Conn, bool) {
	if c == nil || c.limit <= 0 {
		return conn, true
	}
	m, limit := &c.n, c.limit
	if c.trustedPeer(conn.RemoteAddr()) {
		m, limit = &c.proxies, c.proxyLimit()
	}
	release, ok := c.takeIn(m, Key(conn.RemoteAddr()), limit)
	if !ok {
		return conn, false
	}
	return &Conn{Conn: conn, release: release}, true
}

// LimitOf is the bound on the connections of the peer at a: Limit, or
// for a trusted proxy ProxyFactor times Limit.
func (c *Cap) LimitOf(a net.Addr) int {
	if c.trustedPeer(a) {
		return c.proxyLimit()
	}
	return c.Limit()
}

// proxyLimit is the bound on a trusted proxy's own connections.
func (c *Cap) proxyLimit() int { return c.limit * ProxyFactor }

// take takes a place of key, or reports false when it has none left.
func (c *Cap) take(key netip.Prefix) (release func(), ok bool) {
	return c.takeIn(&c.n, key, c.limit)
}

// takeIn takes a place of key in the count *m (made at first use) bounded
// at limit, or reports false when it has none left.
func (c *Cap) takeIn(m *map[netip.Prefix]int, key netip.Prefix, limit int) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *m == nil {
		*m = map[netip.Prefix]int{}
	}
	n := *m
	if n[key] >= limit {
		return nil, false
	}
	n[key]++
	return func() {
		c.mu.Lock()
		if n[key]--; n[key] <= 0 {
			delete(n, key)
		}
		c.mu.Unlock()
	}, true
}

// Streams wraps h so that an HTTP/2 request (a stream; h2c, or HTTP/2 over
// TLS) takes a place of its client's address while it runs, as a
// connection does: one HTTP/2 connection multiplexes many requests, each
// of which holds a connection to its instance, so without this one
// address could hold its cap of connections times the streams each
// carries. Every request of a trusted proxy (Trust), HTTP/1 too, takes
// the place of the client it names instead (Request). A request past the
// cap gets 429. Other HTTP/1 requests pass (their connection holds the
// place).
func (c *Cap) Streams(h http.Handler) http.Handler {
	if c == nil || c.limit <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		trusted := c.trusted != nil && c.trusted(forwarded.Host(r.RemoteAddr))
		if r.ProtoMajor != 2 && !trusted {
			h.ServeHTTP(w, r)
			return
		}
		var xff []string
		if trusted && (c.trustReq == nil || c.trustReq(r)) {
			xff = r.Header.Values("X-Forwarded-For")
		}
		// Without trust, Request's client is the peer's own address.
		release, from, ok := c.Request(r.RemoteAddr, xff)
		if !ok {
			w.Header().Set("Retry-After", "1")
			http.Error(w, c.tooMany(from), http.StatusTooManyRequests)
			return
		}
		defer release()
		h.ServeHTTP(w, r)
	})
}

// tooMany is the message of a 429 for a client (Name) that holds Limit
// places already.
func (c *Cap) tooMany(from string) string {
	return fmt.Sprintf("too many connections and requests from %s (at most %d open at once)", from, c.limit)
}

// Open is how many connections addr (and, for IPv6, the rest of its /64)
// holds open now.
func (c *Cap) Open(addr netip.Addr) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[KeyOf(addr)]
}

// Conn is an admitted connection; its first Close gives its place back.
type Conn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close closes the connection and gives its place back (once).
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Unwrap returns the connection underneath c when c is a *Conn, else c.
func Unwrap(c net.Conn) net.Conn {
	if x, ok := c.(*Conn); ok {
		return x.Conn
	}
	return c
}

// Listener admits each accepted connection through c. A connection over
// the cap goes to refuse (which must close it, and may answer first, as
// Refuse429 does; it runs on its own goroutine so that a slow refusal
// cannot stall Accept; from is Name of the connection's key), or is closed
// at once when refuse is nil; Accept then waits for the next.
func (c *Cap) Listener(ln net.Listener, refuse func(conn net.Conn, from string, limit int)) net.Listener {
	if c == nil || c.limit <= 0 {
		return ln
	}
	return &listener{Listener: ln, cap: c, refuse: refuse}
}

type listener struct {
	net.Listener
	cap    *Cap
	refuse func(net.Conn, string, int)
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ac, ok := l.cap.Admit(conn); ok {
			return ac, nil
		}
		if l.refuse == nil {
			conn.Close()
			continue
		}
		go l.refuse(conn, Name(Key(conn.RemoteAddr())), l.cap.LimitOf(conn.RemoteAddr()))
	}
}

// Refuse429 answers 429 on an HTTP connection from a client (Name) that
// holds limit connections already, and closes it.
func Refuse429(c net.Conn, from string, limit int) {
	msg := fmt.Sprintf("too many connections from %s (at most %d open at once)", from, limit)
	c.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s\n", len(msg)+1, msg)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	c.Close()
}
