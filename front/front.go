// Package front is ten's listener for HTTP: every connection starts on the
// router's fast path (fastpath.ConnServer), which hands what it does not serve
// to an http.Server (HTTP/1.1 and h2c) around the router; the listener's
// limits (timeouts, header size, connections per address) and the drain on
// stop, which loses no request a client has sent, live here.
package front

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/router/fastpath"
)

// Connection limits of ten's listeners (the router and the admin API share
// them; the HTTPS listeners of settings.tls have the same); README.md,
// "Limits", lists them. The cap of connections per client address is
// settings.max_conns_per_address (Options.MaxConnsPerAddr).
const (
	// IdleTimeout closes a keep-alive connection without a request.
	IdleTimeout = 60 * time.Second
	// HeaderTimeout bounds receiving a request head (408 after it).
	HeaderTimeout = 15 * time.Second
	// MaxHeaderBytes bounds a request head (431 beyond).
	MaxHeaderBytes = 32 << 10

	connBodyTimeout  = 30 * time.Second
	connWriteTimeout = 30 * time.Second
	connStallCheck   = 15 * time.Second
)

// DrainGrace is how long at most a stopping ten keeps answering on open
// keep-alive connections (closing each after its answer) before it closes
// the rest.
const DrainGrace = 500 * time.Millisecond

// Options are what Serve needs.
type Options struct {
	Router *router.Router
	Log    *slog.Logger
	// Domain and Instances are for the log line that says ten serves.
	Domain    string
	Instances func() int
	// TLS, when set, serves the same handler over HTTPS until ctx ends; the
	// function it returns waits until that has drained.
	TLS func(ctx context.Context, h http.Handler) (wait func(), err error)
	// MaxConnsPerAddr bounds the connections one client address holds
	// open (settings.max_conns_per_address); past it a connection gets
	// 429 and is closed at once. 0: no bound.
	MaxConnsPerAddr int
}

// Serve serves ln until ctx ends: each connection starts on the
// router's fast path (fastpath.ConnServer), which hands what it does not
// serve to an http.Server (HTTP/1.1 and h2c) around the router. On ctx's
// end it stops accepting, answers for a moment more with Connection: close
// on the open connections, then closes them.
func Serve(ctx context.Context, ln net.Listener, o Options) error {
	var draining atomic.Bool
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			// The server closes the connection after this response; the
			// client's next request opens a new one, which waits in the
			// listen backlog for the next ten.
			w.Header().Set("Connection", "close")
		}
		serveWithTimeouts(o.Router, w, r)
	})
	var open atomic.Int64 // connections the http.Server still owns
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c from a proxy in front
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: HeaderTimeout, IdleTimeout: IdleTimeout,
		MaxHeaderBytes: MaxHeaderBytes, Protocols: protocols,
		ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}}
	q := newConnQueue(ln.Addr())
	cs := &fastpath.ConnServer{Router: o.Router, Fallback: q.put, Limits: fastpath.Limits{
		IdleTimeout: IdleTimeout, HeaderTimeout: HeaderTimeout, WriteTimeout: connWriteTimeout,
		MaxHeaderBytes: MaxHeaderBytes, MaxConnsPerAddr: o.MaxConnsPerAddr, StallCheck: connStallCheck,
	}}
	// An HTTP/2 stream holds an instance connection as an HTTP/1.1 client
	// connection does: it counts against the client's address too.
	srv.Handler = cs.Cap().Streams(handler)
	go srv.Serve(q)

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		// Stop accepting first: new connections wait in the listen backlog
		// (held by systemd when ten is installed) for the next ten. Then
		// answer for a moment more on the keep-alive connections, each
		// answer closing its connection: closing a connection found idle
		// loses a request a client has just sent on it (wrk at steady load
		// lost 6-17 per three restarts). Clients that keep sending move
		// over within the grace (which ends as soon as every connection
		// has); only a connection idle throughout can still meet the close.
		ln.Close()
		draining.Store(true)
		cs.Drain()
		// A connection accepted just before the close is counted a moment
		// after Accept returns.
		time.Sleep(50 * time.Millisecond)
		for end := time.Now().Add(DrainGrace); open.Load()+int64(cs.Active()) > 0 && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
		cs.CloseIdle()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		for cs.Active() > 0 && sctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
			cs.CloseIdle()
		}
	}()
	// HTTPS (settings.tls) serves the same handler on its own listeners.
	tlsDone := func() {}
	if o.TLS != nil {
		var err error
		if tlsDone, err = o.TLS(ctx, handler); err != nil {
			ln.Close()
			q.Close()
			return err
		}
	}
	o.Log.Info("serving", "listen", ln.Addr().String(), "domain", o.Domain, "instances", o.Instances())
	err := cs.Serve(ln)
	if ctx.Err() != nil {
		<-drained
		tlsDone()
		return nil
	}
	q.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// serveWithTimeouts serves one request of the http.Server path with a body
// read that must progress within connBodyTimeout and response writes that
// must progress within connWriteTimeout (both per read or write, not for
// the whole request: uploads and streamed answers may take long).
func serveWithTimeouts(h http.Handler, w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	if r.Body != nil && r.Body != http.NoBody && r.ProtoMajor == 1 {
		r.Body = &bodyTimeout{rc: rc, rc2: r.Body}
	}
	tw := &writeTimeout{ResponseWriter: w, rc: rc}
	h.ServeHTTP(tw, r)
	// What the server writes after the handler (the end of a chunked body)
	// gets a fresh deadline too.
	if !tw.hijacked {
		_ = rc.SetWriteDeadline(time.Now().Add(connWriteTimeout))
	}
}

// bodyTimeout renews the connection's read deadline before each read of
// the request body, and clears it at the body's end (the server reads on in
// the background to notice a client going away, which must not time out).
type bodyTimeout struct {
	rc  *http.ResponseController
	rc2 io.ReadCloser
}

func (b *bodyTimeout) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(connBodyTimeout))
	n, err := b.rc2.Read(p)
	if err != nil {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (b *bodyTimeout) Close() error { return b.rc2.Close() }

// writeTimeout renews the write deadline before each write and flush; a
// hijacked connection (an upgrade: WebSocket) is left without deadlines.
type writeTimeout struct {
	http.ResponseWriter
	rc       *http.ResponseController
	hijacked bool
}

func (w *writeTimeout) renew() { _ = w.rc.SetWriteDeadline(time.Now().Add(connWriteTimeout)) }

func (w *writeTimeout) WriteHeader(code int) {
	w.renew()
	w.ResponseWriter.WriteHeader(code)
}

func (w *writeTimeout) Write(p []byte) (int, error) {
	w.renew()
	return w.ResponseWriter.Write(p)
}

func (w *writeTimeout) Flush() {
	w.renew()
	_ = w.rc.Flush()
}

func (w *writeTimeout) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := w.rc.Hijack()
	if err == nil {
		w.hijacked = true
		_ = c.SetDeadline(time.Time{})
	}
	return c, brw, err
}

func (w *writeTimeout) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// connQueue is a net.Listener whose connections are those the fast path
// hands over.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) put(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
