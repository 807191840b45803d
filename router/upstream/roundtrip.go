package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// RoundTrip sends a request of the router's net/http path (h2c, streamed
// bodies, connections handed over) to an awake instance over the same pool
// of keep-alive connections as the fast path, with the same rules: a
// request is sent again when writing it failed on a kept-alive connection
// before a byte of it went out (the app had closed that connection, so
// nothing reached it), and a request with no body and a method that
// changes nothing (GET, HEAD, OPTIONS) once more when its kept-alive
// connection ended before a byte of an answer (RFC 9110 §9.2.2: the app
// was killed as it came, or closed the idle connection). dial opens a new
// connection when the pool has none. (Waking requests and upgrades use an
// http.Transport instead, a new connection each.)
func (p *Pool) RoundTrip(req *http.Request, dial func() (*Conn, error)) (*http.Response, error) {
	ctx := req.Context()
	hasBody := req.Body != nil && req.Body != http.NoBody
	uc := p.Get()
	reused := uc != nil
	for {
		if uc == nil {
			var err error
			if uc, err = dial(); err != nil {
				return nil, err
			}
		}
		stop := context.AfterFunc(ctx, func() { uc.C.SetDeadline(aLongTimeAgo) })
		uc.C.SetDeadline(time.Time{})
		cw := &countingWriter{w: uc.C}
		var werr chan error
		var body *watchedBody
		if hasBody {
			// The body streams while the response is read (full duplex).
			// When reading it from the client fails (the client went away,
			// stalled, or passed max_body_mb), the instance's connection
			// is closed: the instance must not wait for the rest, and the
			// response read below ends with the body's error.
			body = &watchedBody{rc: req.Body}
			out := req.WithContext(ctx)
			out.Body = body
			werr = make(chan error, 1)
			go func() {
				err := out.Write(cw)
				if body.failed() != nil {
					uc.C.Close()
				}
				werr <- err
			}()
		} else if err := req.Write(cw); err != nil {
			stop()
			uc.C.Close()
			if reused && cw.n == 0 && ctx.Err() == nil {
				uc, reused = nil, false
				continue
			}
			return nil, err
		}
		if reused && !hasBody && SafeMethod(req.Method) {
			if _, perr := uc.BR.Peek(1); perr != nil && ctx.Err() == nil &&
				(perr == io.EOF || errors.Is(perr, syscall.ECONNRESET)) {
				stop()
				uc.C.Close()
				uc, reused = nil, false
				continue
			}
		}
		resp, err := readFinalResponse(uc, req)
		if err != nil {
			stop()
			uc.C.Close()
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			if berr := body.failed(); berr != nil {
				return nil, berr
			}
			return nil, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			stop()
			uc.C.Close()
			return nil, errors.New("instance switched protocols without being asked to")
		}
		resp.Body = &pooledBody{rc: resp.Body, uc: uc, pool: p, stop: stop, werr: werr, reusable: !resp.Close && !req.Close}
		return resp, nil
	}
}

// SafeMethod reports whether a request's method changes nothing (GET,
// HEAD, OPTIONS; "" is net/http's GET): such a request without a body may
// be sent again when its kept-alive connection fails before an answer.
func SafeMethod(m string) bool {
	return m == "" || m == "GET" || m == "HEAD" || m == "OPTIONS"
}

// readFinalResponse reads past interim (1xx) answers.
func readFinalResponse(uc *Conn, req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(uc.BR, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		resp.Body.Close()
	}
}

var aLongTimeAgo = time.Unix(1, 0)

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// pooledBody returns the connection to the pool when the response body was
// read to its end and the request body was written whole; otherwise the
// connection is closed.
type pooledBody struct {
	rc       io.ReadCloser
	uc       *Conn
	pool     *Pool
	stop     func() bool
	werr     chan error
	reusable bool
	once     sync.Once
	eof      bool
}

func (p *pooledBody) Read(buf []byte) (int, error) {
	n, err := p.rc.Read(buf)
	if err == io.EOF {
		p.eof = true
		p.release()
	}
	return n, err
}

func (p *pooledBody) Close() error {
	err := p.rc.Close()
	p.release()
	return err
}

func (p *pooledBody) release() {
	p.once.Do(func() {
		keep := p.eof && p.reusable && p.stop()
		if keep && p.werr != nil {
			select {
			case err := <-p.werr:
				keep = err == nil
			default:
				keep = false // still writing the request body
			}
		}
		if keep && p.uc.BR.Buffered() == 0 {
			p.pool.Put(p.uc)
			return
		}
		p.uc.C.Close()
	})
}

// watchedBody remembers the first error reading a request body from the
// client.
type watchedBody struct {
	rc  io.ReadCloser
	mu  sync.Mutex
	err error
}

func (w *watchedBody) Read(p []byte) (int, error) {
	n, err := w.rc.Read(p)
	if err != nil && err != io.EOF {
		w.mu.Lock()
		if w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
	}
	return n, err
}

func (w *watchedBody) Close() error { return w.rc.Close() }

// failed is the body's read error, if any (nil on a nil body).
func (w *watchedBody) failed() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
