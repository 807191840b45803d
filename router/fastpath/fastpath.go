package fastpath

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/router/addrcap"
	"github.com/tenhq/ten/router/fleet"
	"github.com/tenhq/ten/router/http1"
	"github.com/tenhq/ten/router/upstream"
)

// Limits bound what one client connection may hold and for how long.
type Limits struct {
	// IdleTimeout closes a keep-alive connection with no request for so long.
	IdleTimeout time.Duration
	// HeaderTimeout bounds receiving one request head, from its first byte
	// (from the accept for a connection's first request); 408 after it.
	HeaderTimeout time.Duration
	// WriteTimeout closes a connection whose client has taken nothing of a
	// response for so long (a client that never reads).
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds a request head; 431 beyond.
	MaxHeaderBytes int
	// MaxConnsPerAddr bounds the open connections of one client address
	// (Serve); 0 is no bound.
	MaxConnsPerAddr int
	// StallCheck: while an instance's answer body stalls, every so often
	// the router checks that the client is still connected, and closes
	// both connections once it is not (0: never checks).
	StallCheck time.Duration
}

// ConnServer serves client connections for a Router with a lean HTTP/1.1
// loop, one goroutine per connection and no hand-off per request: read a
// request head, route it by its own Host, write it to an idle connection
// of the instance's pool, relay the response, repeat. What that loop does
// not serve — the admin API and other hosts, anything a 404 or 503
// explains, a sleeping, frozen or stopping instance (wake and thaw),
// upgrades and WebSocket, h2c, Expect, chunked or not yet received request
// bodies, HTTP/1.0 — goes with the connection, and every byte read of it,
// to Fallback (an http.Server around Router.ServeHTTP), which serves the
// rest of that connection. So each feature has one code path.
type ConnServer struct {
	Router *router.Router
	// Fallback takes over a connection; reads from it return the bytes the
	// fast path read first.
	Fallback func(net.Conn)
	Limits   Limits

	draining atomic.Bool
	mu       sync.Mutex
	conns    map[*clientConn]struct{}
	capOnce  sync.Once
	cap      *addrcap.Cap
}

// Drain makes every later answer close its connection (ten is stopping).
func (s *ConnServer) Drain() { s.draining.Store(true) }

// CloseIdle closes the connections that wait for a request; those with a
// request in progress close after it (with Drain).
func (s *ConnServer) CloseIdle() {
	var idle []net.Conn
	s.mu.Lock()
	for cc := range s.conns {
		if cc.idle.Load() {
			idle = append(idle, cc.c)
		}
	}
	s.mu.Unlock()
	// Closed outside the lock: closing releases the address's count.
	for _, c := range idle {
		c.Close()
	}
}

// Active is the number of connections the fast path still serves.
func (s *ConnServer) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

type clientConn struct {
	s *ConnServer
	r *router.Router
	c net.Conn
	// rio reads and writes c's socket (upstream.RawIO).
	rio *upstream.RawIO
	// buf holds bytes read from the client, unread ones in buf[rd:wr].
	buf    []byte
	rd, wr int
	bw     *bufio.Writer
	dw     deadlineWriter
	ip     string
	// peer: the client is another fleet node's router, whose
	// X-Forwarded-* headers are kept (Options.FleetPeer).
	peer bool
	// trusted: the client is a proxy in front of ten, whose X-Forwarded-*
	// headers are kept (Options.TrustedProxy).
	trusted bool
	// forwarded: the request being served names its client in
	// X-Forwarded-* (trusted, or a peer's with the fleet's token).
	forwarded bool
	head      http1.Request
	out       []byte
	// pre takes the first bytes of an instance's answer (writeRequest),
	// lent for one exchange.
	pre  *[]byte
	idle atomic.Bool
}

var (
	preBufs   = sync.Pool{New: func() any { b := make([]byte, upstream.ReadBufSize); return &b }}
	readBufs  = sync.Pool{New: func() any { b := make([]byte, 4<<10); return &b }}
	writeBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 8<<10) }}
)

// ServeConn serves c until it closes, or hands it to Fallback.
func (s *ConnServer) ServeConn(c net.Conn) {
	cc := &clientConn{s: s, r: s.Router, c: c}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		cc.ip = a.IP.String()
		cc.peer = s.Router.FleetPeer(cc.ip)
		cc.trusted = s.Router.TrustedProxy(cc.ip)
	}
	bp := readBufs.Get().(*[]byte)
	cc.buf = *bp
	cc.rio = upstream.NewRawIO(addrcap.Unwrap(c))
	cc.dw = deadlineWriter{c: c, w: cc.rio, timeout: s.Limits.WriteTimeout}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*clientConn]struct{}{}
	}
	s.conns[cc] = struct{}{}
	s.mu.Unlock()

	handed := cc.serve()

	s.mu.Lock()
	delete(s.conns, cc)
	s.mu.Unlock()
	cc.putWriter()
	if len(cc.buf) == 4<<10 {
		*bp = cc.buf
		readBufs.Put(bp)
	}
	if !handed {
		if cc.dw.failed {
			abort(c)
		}
		c.Close()
	}
}

// clientHere reports whether the client is still connected
// (upstream.PeerClosed on its socket); a connection it cannot look into
// counts as there.
func (cc *clientConn) clientHere() bool {
	sc, ok := addrcap.Unwrap(cc.c).(syscall.Conn)
	return !ok || !upstream.PeerClosed(sc)
}

// abort makes Close reset the connection: a client that took nothing of a
// response for the write timeout does not keep the unsent rest in the
// kernel's buffers either.
func abort(c net.Conn) {
	if tc, ok := addrcap.Unwrap(c).(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

// serve runs the request loop; handed reports that the connection went to
// Fallback.
func (cc *clientConn) serve() (handed bool) {
	lim := &cc.s.Limits
	// While draining, a request that arrives is still answered (with
	// Connection: close): closing a connection found idle could lose a
	// request the client has just sent on it. CloseIdle ends the others.
	for first := true; ; first = false {
		cc.idle.Store(true)
		err := cc.readHead(first)
		cc.idle.Store(false)
		switch {
		case err == nil:
		case errors.Is(err, errHandOff):
			return cc.handOff()
		case errors.Is(err, http1.ErrHeadTooLarge):
			cc.refuse(431, fmt.Sprintf("request head larger than %d bytes", lim.MaxHeaderBytes))
			return false
		case errors.Is(err, os.ErrDeadlineExceeded):
			if cc.wr > cc.rd {
				cc.refuse(408, fmt.Sprintf("request head not received within %s", lim.HeaderTimeout))
			}
			return false
		case errors.Is(err, http1.ErrIncomplete), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
			return false
		default:
			if http1.IsParseError(err) {
				cc.refuse(400, err.Error())
			}
			return false
		}
		h := &cc.head
		if max := cc.r.MaxBody(); max > 0 && h.ContentLength > max {
			// Before anything is forwarded, woken or handed over (an
			// Expect: 100-continue client never sends the body).
			cc.refuse(413, cc.r.BodyTooLarge(h.ContentLength))
			cc.lingerClose()
			return false
		}
		if h.Minor != 1 || h.Upgrade || h.Expect || h.Chunked || h.ConnTokens || len(h.Target) == 0 || h.Target[0] != '/' {
			return cc.handOff()
		}
		body := max(h.ContentLength, 0)
		if int64(cc.wr-cc.rd-h.Size) < body {
			return cc.handOff() // the body is not all here: the streaming path takes it
		}
		cc.forwarded = cc.trusted || cc.peerAuthed(h.Lines)
		release := noRelease
		if cc.trusted || cc.peer {
			// A trusted proxy's or fleet peer's requests count against
			// the clients it names (addrcap.Cap.Trust); one past its
			// client's cap goes to Fallback, whose addrcap.Cap.Streams
			// answers the 429. A request from a peer's address without
			// the fleet's token (an app on that node, say) counts
			// against the address itself.
			var xff []string
			if cc.forwarded {
				xff = forwardedFor(h.Lines)
			}
			var ok bool
			if release, _, ok = cc.s.Cap().Request(cc.ip, xff); !ok {
				return cc.handOff()
			}
		}
		b := cc.r.Lookup(h.Host)
		if b == nil || !b.AcquireAwake() {
			release()
			return cc.handOff()
		}
		cc.getWriter()
		cc.pre = preBufs.Get().(*[]byte)
		keep := cc.proxy(b, h, cc.buf[cc.rd+h.Size:cc.rd+h.Size+int(body)])
		b.Release()
		release()
		preBufs.Put(cc.pre)
		cc.pre = nil
		cc.putWriter() // an idle connection holds no write buffer
		cc.rd += h.Size + int(body)
		if !keep {
			return false
		}
	}
}

// errHandOff is readHead's way to say "not for the fast path" (h2c).
var errHandOff = errors.New("hand off")

var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// readHead reads until buf[rd:wr] starts with a whole request head, parsed
// into cc.head.
func (cc *clientConn) readHead(first bool) error {
	lim := &cc.s.Limits
	if cc.rd == cc.wr {
		cc.rd, cc.wr = 0, 0
	}
	now := time.Now()
	if first {
		cc.c.SetReadDeadline(now.Add(lim.HeaderTimeout))
	} else {
		cc.c.SetReadDeadline(now.Add(lim.IdleTimeout))
	}
	started := first
	for {
		if p := cc.buf[cc.rd:cc.wr]; len(p) > 0 {
			if p[0] == 'P' && bytes.HasPrefix(h2Preface, p[:min(len(p), len(h2Preface))]) {
				if len(p) >= len(h2Preface) {
					return errHandOff
				}
			} else {
				err := http1.ParseRequest(p, &cc.head)
				if err != http1.ErrIncomplete {
					if err == nil && cc.head.Size > lim.MaxHeaderBytes {
						return http1.ErrHeadTooLarge
					}
					return err
				}
				if len(p) >= lim.MaxHeaderBytes {
					return http1.ErrHeadTooLarge
				}
			}
			if !started {
				started = true
				cc.c.SetReadDeadline(time.Now().Add(lim.HeaderTimeout))
			}
		}
		if cc.wr == len(cc.buf) {
			if cc.rd > 0 {
				cc.wr = copy(cc.buf, cc.buf[cc.rd:cc.wr])
				cc.rd = 0
			} else {
				nb := make([]byte, min(2*len(cc.buf), lim.MaxHeaderBytes+4<<10))
				cc.wr = copy(nb, cc.buf[:cc.wr])
				cc.buf = nb
			}
		}
		n, err := cc.rio.Read(cc.buf[cc.wr:])
		cc.wr += n
		if err != nil && n == 0 {
			return err
		}
	}
}

// handOff gives the connection, with the bytes read and not served, to
// Fallback.
func (cc *clientConn) handOff() bool {
	if cc.s.Fallback == nil {
		cc.refuse(500, "no fallback server")
		return false
	}
	cc.c.SetReadDeadline(time.Time{})
	cc.c.SetWriteDeadline(time.Time{})
	pc := &prefixConn{Conn: cc.c, pending: bytes.Clone(cc.buf[cc.rd:cc.wr])}
	cc.s.Fallback(pc)
	return true
}

// lingerClose ends a connection whose client may still be sending a body
// that ten will not read: it closes the sending side (FIN after the
// answer), then reads and drops what arrives until the client closes or
// router.LingerTime passes. Closing at once with unread data in the socket makes
// the kernel send a reset, which can destroy the answer before the client
// has read it (nginx's lingering close).
func (cc *clientConn) lingerClose() {
	if tc, ok := addrcap.Unwrap(cc.c).(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	cc.c.SetReadDeadline(time.Now().Add(router.LingerTime))
	for {
		if _, err := cc.c.Read(cc.buf); err != nil {
			return
		}
	}
}

// getWriter lends the connection a write buffer for one answer.
func (cc *clientConn) getWriter() {
	if cc.bw == nil {
		cc.bw = writeBufs.Get().(*bufio.Writer)
		cc.bw.Reset(&cc.dw)
	}
}

func (cc *clientConn) putWriter() {
	if cc.bw != nil {
		cc.bw.Reset(nil)
		writeBufs.Put(cc.bw)
		cc.bw = nil
	}
}

// refuse answers an error and the connection is closed after it.
func (cc *clientConn) refuse(code int, msg string) {
	cc.getWriter()
	cc.writeError(code, msg, false)
	cc.bw.Flush()
}

// writeError writes a plain-text answer as http.Error would.
func (cc *clientConn) writeError(code int, msg string, keep bool) {
	bw := cc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	bw.WriteString(http1.StatusText(code))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(msg) + 1))
	if !keep {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	bw.WriteString(msg)
	bw.WriteByte('\n')
}

// proxy relays one request to b and its response back; keep reports that
// the client connection can serve another request.
func (cc *clientConn) proxy(b *router.Route, h *http1.Request, body []byte) (keep bool) {
	start := time.Now()
	code, keep := cc.exchange(b, h, body, start)
	b.Observe(code, time.Since(start))
	// keep is what the answer told the client (Connection: close or not);
	// a drain that began after it was written closes the connection after
	// the next answer, or CloseIdle does: closing it now could lose a
	// request the client is already sending on it.
	return keep && !h.Close
}

// buildRequest writes the request for the instance into cc.out: the
// client's head without hop-by-hop headers and with X-Forwarded-For, -Host
// and -Proto set by ten (as httputil.ProxyRequest.SetXForwarded does, the
// client's own are dropped unless it is a fleet peer or a trusted proxy),
// then the body.
func (cc *clientConn) buildRequest(h *http1.Request, body []byte) []byte {
	o := cc.out[:0]
	o = append(o, h.Method...)
	o = append(o, ' ')
	o = append(o, h.Target...)
	o = append(o, " HTTP/1.1\r\n"...)
	var prior []byte // a fleet peer's or trusted proxy's X-Forwarded-For
	var peerHost, peerProto bool
	peer := cc.forwarded
	for _, l := range h.Lines {
		name := http1.HeaderName(l)
		if http1.HopByHop(name) || fleetAuth(name) {
			// The fleet's token is for routers; never an app's to see.
			continue
		}
		if xForwarded(name) {
			if !peer {
				continue
			}
			switch len(name) {
			case 15:
				// Several lines are one list (RFC 9110, 5.3).
				if v := bytes.TrimSpace(l[len(name)+1:]); len(prior) == 0 {
					prior = v
				} else if len(v) > 0 {
					prior = append(append(append([]byte(nil), prior...), ", "...), v...)
				}
				continue
			case 16:
				peerHost = true
			case 17:
				peerProto = true
			}
		}
		o = append(o, l...)
		o = append(o, "\r\n"...)
	}
	if cc.ip != "" {
		o = append(o, "X-Forwarded-For: "...)
		if len(prior) > 0 {
			o = append(o, prior...)
			o = append(o, ", "...)
		}
		o = append(o, cc.ip...)
		o = append(o, "\r\n"...)
	}
	if !peerHost {
		o = append(o, "X-Forwarded-Host: "...)
		o = append(o, h.Host...)
		o = append(o, "\r\n"...)
	}
	if !peerProto {
		o = append(o, "X-Forwarded-Proto: http\r\n"...)
	}
	o = append(o, "\r\n"...)
	o = append(o, body...)
	cc.out = o
	return o
}

func noRelease() {}

// forwardedFor is the values of the head's X-Forwarded-For lines.
func forwardedFor(lines [][]byte) []string {
	var v []string
	for _, l := range lines {
		if name := http1.HeaderName(l); len(name) == 15 && http1.EqualFold(name, "x-forwarded-for") {
			v = append(v, string(bytes.TrimSpace(l[len(name)+1:])))
		}
	}
	return v
}

// peerAuthed reports whether the head is a fleet peer's forwarded request:
// the client's address is a peer's, and the head carries HopHeader and
// exactly one fleet.AuthHeader with the fleet's token.
func (cc *clientConn) peerAuthed(lines [][]byte) bool {
	if !cc.peer {
		return false
	}
	hop, auth := false, 0
	var token []byte
	for _, l := range lines {
		switch name := http1.HeaderName(l); {
		case http1.EqualFold(name, "x-ten-fleet-hop"):
			hop = true
		case fleetAuth(name):
			auth++
			token = bytes.TrimSpace(l[len(name)+1:])
		}
	}
	return hop && auth == 1 && cc.r.FleetAuthValid(token)
}

// fleetAuth reports whether a header name is fleet.AuthHeader.
func fleetAuth(name []byte) bool {
	return len(name) == len(fleet.AuthHeader) && http1.EqualFold(name, "x-ten-fleet-auth")
}

func xForwarded(name []byte) bool {
	switch len(name) {
	case 9:
		return http1.EqualFold(name, "forwarded")
	case 15:
		return http1.EqualFold(name, "x-forwarded-for")
	case 16:
		return http1.EqualFold(name, "x-forwarded-host")
	case 17:
		return http1.EqualFold(name, "x-forwarded-proto")
	}
	return false
}

// exchange sends the request and relays the response. It returns the
// status code the client got and whether its connection can go on.
func (cc *clientConn) exchange(b *router.Route, h *http1.Request, body []byte, start time.Time) (int, bool) {
	req := cc.buildRequest(h, body)
	resends := 0
	uc, reused, err := cc.send(b, req)
	uc, err = cc.resendReset(b, req, h, body, uc, err, &resends)
	if err != nil {
		cc.r.Logger().Warn("proxy error", "instance", b.Instance.String(), "err", err)
		cc.writeError(502, fmt.Sprintf("instance %s: %v", b.Instance, err), true)
		return 502, cc.flush()
	}
	rh := &uc.Head
	for interim := 0; ; interim++ {
		err = http1.ReadResponse(uc.BR, &uc.Head)
		if err != nil {
			uc.C.Close()
			if resends < maxResends && (unread(err, uc, h, body) || reused && closedUnanswered(err, uc, h, body)) {
				// The app never read the request (see unread), or closed a
				// kept-alive connection without a byte of an answer (see
				// closedUnanswered): send it again, on a new connection.
				// More than once after a reset: a new connection may land
				// in the backlog of an app that is being killed, and be
				// reset with it.
				resends++
				reused = false
				uc, err = cc.sendNew(b, req)
				uc, err = cc.resendReset(b, req, h, body, uc, err, &resends)
				if err != nil {
					cc.r.Logger().Warn("proxy error", "instance", b.Instance.String(), "err", err)
					cc.writeError(502, fmt.Sprintf("instance %s: %v", b.Instance, err), true)
					return 502, cc.flush()
				}
				rh = &uc.Head
				continue
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				cc.writeError(504, fmt.Sprintf("instance %s did not answer within request_timeout %s", b.Instance, b.RequestTimeout), true)
				return 504, cc.flush()
			}
			// Not retried: the request reached the app on a new
			// connection (or was already sent again), or part of an
			// answer came back.
			cc.r.Logger().Warn("proxy error", "instance", b.Instance.String(), "err", err)
			cc.writeError(502, fmt.Sprintf("instance %s: %v", b.Instance, err), true)
			return 502, cc.flush()
		}
		if rh.Code >= 200 || rh.Code == 101 {
			break
		}
		// An interim answer (103 Early Hints): relay it and read on, a few
		// times: an app that sends them without end gets a 502.
		if interim >= maxInterim {
			uc.C.Close()
			cc.bw.Reset(&cc.dw)
			cc.writeError(502, fmt.Sprintf("instance %s sent more than %d interim (1xx) answers", b.Instance, maxInterim), true)
			return 502, cc.flush()
		}
		// Sent at once: early hints are for the client to act on while
		// the app is still working on the answer.
		cc.writeRespHead(rh, true)
		cc.flush()
		uc.BR.Discard(rh.Size)
	}
	cc.r.Answered(b)
	if rh.Code == 101 {
		uc.C.Close()
		cc.writeError(502, fmt.Sprintf("instance %s switched protocols without being asked to", b.Instance), true)
		return 502, cc.flush()
	}
	noBody := bytes.Equal(h.Method, []byte("HEAD")) || rh.Code == 204 || rh.Code == 304
	// Until the upstream closes: the client learns the end by the close.
	untilClose := !noBody && !rh.Chunked && rh.ContentLength < 0
	upKeep := !untilClose && !rh.Close && (rh.Minor == 1 || rh.KeepAlive) && len(rh.ConnNames) == 0
	keep := !untilClose && !h.Close && !cc.s.draining.Load()
	sent := cc.dw.sent
	cc.writeRespHead(rh, keep)
	uc.BR.Discard(rh.Size)
	var cerr error
	if !noBody && (rh.Chunked || int64(uc.BR.Buffered()) < rh.ContentLength || rh.ContentLength < 0) {
		// The body streams without request_timeout's deadline, for as
		// long as the client waits for it (Limits.StallCheck).
		uc.StreamBody(cc.s.Limits.StallCheck, cc.clientHere)
	}
	switch {
	case noBody:
	case rh.Chunked:
		cerr = cc.copyChunked(uc)
	case rh.ContentLength >= 0:
		cerr = cc.copyN(uc, rh.ContentLength)
	default:
		cerr = cc.copyN(uc, -1)
	}
	// Before uc goes back to the pool, where another request may take it.
	uc.EndBody()
	code := rh.Code
	if cerr != nil {
		uc.C.Close()
		if cc.dw.sent == sent && !cc.dw.failed && !errors.Is(cerr, upstream.ErrClientGone) {
			// Nothing of the answer has left yet (a body malformed or
			// cut at once): the client gets a 502 that says so instead.
			cc.bw.Reset(&cc.dw)
			cc.r.Logger().Warn("proxy error", "instance", b.Instance.String(), "err", cerr)
			cc.writeError(502, fmt.Sprintf("instance %s: answer's body: %v", b.Instance, cerr), false)
			cc.flush()
			return 502, false
		}
		return code, false
	}
	// rh lives in uc: once uc is back in the pool another request may
	// parse its own answer into it, so nothing of rh is read after this.
	if upKeep && uc.BR.Buffered() == 0 {
		b.Pool().Put(uc)
	} else {
		uc.C.Close()
	}
	return code, cc.flush() && keep
}

// maxInterim bounds the interim (1xx) answers relayed before an answer.
const maxInterim = 8

// send writes the request on a pooled connection (reused), or a new one.
// A pooled connection the app has closed fails the write (EPIPE on a unix
// socket: nothing reached the app), and then the request goes on a new
// connection.
func (cc *clientConn) send(b *router.Route, req []byte) (uc *upstream.Conn, reused bool, err error) {
	if uc := b.Pool().Get(); uc != nil {
		uc.C.SetDeadline(time.Now().Add(b.RequestTimeout))
		n, err := uc.WriteRequest(req, *cc.pre)
		if err == nil {
			return uc, true, nil
		}
		uc.C.Close()
		if n > 0 {
			return nil, false, err
		}
	}
	uc, err = cc.sendNew(b, req)
	return uc, false, err
}

// maxResends bounds how often one request is sent again (see unread).
const maxResends = 3

// resendReset sends req again on new connections while its write is reset
// (resetUnsent), counting in resends up to maxResends: a new connection
// can land in the backlog of an app being killed.
func (cc *clientConn) resendReset(b *router.Route, req []byte, h *http1.Request, body []byte, uc *upstream.Conn, err error, resends *int) (*upstream.Conn, error) {
	for err != nil && *resends < maxResends && resetUnsent(err, h, body) {
		*resends++
		uc, err = cc.sendNew(b, req)
	}
	return uc, err
}

// sendNew writes the request on a new connection to the instance.
func (cc *clientConn) sendNew(b *router.Route, req []byte) (*upstream.Conn, error) {
	uc, err := b.Dial()
	if err != nil {
		return nil, err
	}
	uc.C.SetDeadline(time.Now().Add(b.RequestTimeout))
	if _, err := uc.WriteRequest(req, *cc.pre); err != nil {
		uc.C.Close()
		return nil, err
	}
	return uc, nil
}

// unread reports whether a request provably never reached the app, so that sending it again cannot run it twice: the
// connection was reset (ECONNRESET) before any byte of an answer, and the
// request has no body and a method that changes nothing. A reset, not an
// orderly close: the kernel resets a connection whose socket is closed
// with unread data in it, or that gets data after its socket is gone (the
// app was killed while the connection sat idle in the pool), whereas an
// app that read the request and then exited or crashed closes with a FIN
// (io.ErrUnexpectedEOF here): that request is sent again only as
// closedUnanswered says.
func unread(err error, uc *upstream.Conn, h *http1.Request, body []byte) bool {
	return uc.BR.Buffered() == 0 && resetUnsent(err, h, body)
}

// closedUnanswered reports whether a request sent on a kept-alive
// connection may be sent again after the app closed that connection in
// order (a FIN) before any byte of an answer: it has no body and a method
// that changes nothing (RFC 9110 §9.2.2 lets a proxy repeat those after
// such a failure). The app may have been killed while the request was on
// its way (kill -9: a thread already woken for the connection reads the
// request and dies with it), or have closed the idle connection as it
// came. Once only, and never for a request that went out on a new
// connection: an app that closes every connection it reads a request on
// sees the request twice at most.
func closedUnanswered(err error, uc *upstream.Conn, h *http1.Request, body []byte) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) && uc.BR.Buffered() == 0 && safeNoBody(h, body)
}

// resetUnsent reports whether a request whose connection was reset (or
// whose write found the peer gone: EPIPE) before any answer can be sent
// again: it has no body and a method that changes nothing. A write that
// fails so never delivered the whole request; a read that fails so got no
// byte of an answer (unread checks that).
func resetUnsent(err error, h *http1.Request, body []byte) bool {
	return (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) && safeNoBody(h, body)
}

// safeNoBody reports whether a request has no body and a method that
// changes nothing (GET, HEAD, OPTIONS).
func safeNoBody(h *http1.Request, body []byte) bool {
	if len(body) > 0 || h.Chunked || h.ContentLength > 0 {
		return false
	}
	return upstream.SafeMethod(string(h.Method))
}

// writeRespHead writes the instance's status line and headers without the
// hop-by-hop ones.
func (cc *clientConn) writeRespHead(rh *http1.Response, keep bool) {
	bw := cc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(rh.Status)
	bw.WriteString("\r\n")
	for _, l := range rh.Lines {
		name := http1.HeaderName(l)
		if (http1.HopByHop(name) && !(rh.Chunked && http1.EqualFold(name, "transfer-encoding"))) || rh.NamedInConnection(name) {
			continue
		}
		bw.Write(l)
		bw.WriteString("\r\n")
	}
	if !keep {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

// flush sends what is buffered to the client; false when it cannot.
func (cc *clientConn) flush() bool {
	return cc.bw.Flush() == nil
}

// copyN relays n body bytes (n < 0: until the instance closes), flushing
// to the client whenever the instance has nothing more at hand, so that a
// streamed response streams.
func (cc *clientConn) copyN(uc *upstream.Conn, n int64) error {
	for n != 0 {
		if uc.BR.Buffered() == 0 && cc.bw.Buffered() > 0 {
			if err := cc.bw.Flush(); err != nil {
				return err
			}
		}
		buf := cc.bw.AvailableBuffer()
		if cap(buf) == 0 {
			if err := cc.bw.Flush(); err != nil {
				return err
			}
			continue
		}
		buf = buf[:cap(buf)]
		if n > 0 && int64(len(buf)) > n {
			buf = buf[:n]
		}
		m, err := uc.BR.Read(buf)
		if m > 0 {
			if _, werr := cc.bw.Write(buf[:m]); werr != nil {
				return werr
			}
			if n > 0 {
				n -= int64(m)
			}
		}
		if err != nil {
			if err == io.EOF && n < 0 {
				return nil
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// copyChunked relays a chunked body, checking its framing so that the
// connection to the instance can be reused after it.
func (cc *clientConn) copyChunked(uc *upstream.Conn) error {
	for {
		line, err := cc.chunkLine(uc)
		if err != nil {
			return err
		}
		size, err := http1.ParseChunkSize(line)
		if err != nil {
			return err
		}
		if size == 0 {
			// The last chunk and the trailer go to the client whole, once
			// the instance has sent the trailer's end: a client never gets
			// half a trailer section (a cut or stalled one reaches it as a
			// body cut after the last chunk).
			var trailer []byte
			for i := 0; ; i++ {
				t, err := cc.chunkLine(uc)
				if err != nil {
					return err
				}
				if len(t) == 0 {
					break
				}
				if i >= http1.MaxTrailerLines || !http1.ValidField(t) {
					return http1.ErrBadChunk
				}
				trailer = append(append(trailer, t...), '\r', '\n')
			}
			cc.bw.WriteString("0\r\n")
			cc.bw.Write(trailer)
			cc.bw.WriteString("\r\n")
			return nil
		}
		cc.bw.WriteString(strconv.FormatInt(size, 16))
		cc.bw.WriteString("\r\n")
		if err := cc.copyN(uc, size); err != nil {
			return err
		}
		crlf, err := cc.chunkLine(uc)
		if err != nil {
			return err
		}
		if len(crlf) != 0 {
			return http1.ErrBadChunk
		}
		cc.bw.WriteString("\r\n")
	}
}

// chunkLine reads one CRLF-ended line of chunk framing (without the CRLF).
func (cc *clientConn) chunkLine(uc *upstream.Conn) ([]byte, error) {
	if uc.BR.Buffered() == 0 && cc.bw.Buffered() > 0 {
		if err := cc.bw.Flush(); err != nil {
			return nil, err
		}
	}
	line, err := uc.BR.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, http1.ErrBadChunk
	}
	line = line[:len(line)-2]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, http1.ErrBadChunk
	}
	return line, nil
}

// deadlineWriter writes to the client with a write deadline renewed as
// writes go on: a write that makes no progress for the timeout fails.
// Renewing at most every quarter timeout keeps timer updates off most writes.
type deadlineWriter struct {
	c net.Conn
	// w writes to c (RawIO).
	w       io.Writer
	timeout time.Duration
	renew   time.Time
	failed  bool  // a write failed
	sent    int64 // bytes written in all
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if d.timeout > 0 {
		if now := time.Now(); now.After(d.renew) {
			d.c.SetWriteDeadline(now.Add(d.timeout))
			d.renew = now.Add(d.timeout / 4)
		}
	}
	n, err := d.w.Write(p)
	d.sent += int64(n)
	if err != nil {
		d.failed = true
	}
	return n, err
}

// prefixConn is a connection whose first reads return bytes read already.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Serve accepts connections from ln and serves each on its own goroutine
// until ln is closed. With Limits.MaxConnsPerAddr > 0 a client address
// holding that many open connections gets 429 on the next one, which is
// closed at once.
func (s *ConnServer) Serve(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors and the like: wait a little, as
			// http.Server does, rather than spin.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		cc, ok := s.admit(c)
		if !ok {
			continue
		}
		go s.ServeConn(cc)
	}
}

// Cap is the per-address cap of Limits.MaxConnsPerAddr the server counts
// its connections against (for the HTTP/2 streams of the connections it
// hands off: addrcap.Cap.Streams). It trusts the Router's trusted proxies
// and fleet peers (Router.ClientProxies, addrcap.Cap.Trust), a peer's
// requests only with the fleet's token (Router.TrustsForwarded).
func (s *ConnServer) Cap() *addrcap.Cap {
	s.capOnce.Do(func() {
		s.cap = addrcap.New(s.Limits.MaxConnsPerAddr)
		if s.Router != nil {
			s.cap.Trust(s.Router.ClientProxies())
			s.cap.TrustRequests(s.Router.TrustsForwarded)
		}
	})
	return s.cap
}

// admit counts c against its address's cap; the count drops when the
// connection is closed, by whichever path serves it then.
func (s *ConnServer) admit(c net.Conn) (net.Conn, bool) {
	cc, ok := s.Cap().Admit(c)
	if !ok {
		go addrcap.Refuse429(c, addrcap.Name(addrcap.Key(c.RemoteAddr())), s.cap.LimitOf(c.RemoteAddr()))
	}
	return cc, ok
}
