package router

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tenhq/ten/router/upstream"
)

// Request bodies are bounded by Options.MaxBodyBytes (settings.max_body_mb).
// The fast path refuses a Content-Length over it before anything else
// (fastpath.go); on the net/http path ServeHTTP refuses it the same way and
// cuts a body of unknown length where it passes the bound (MaxBytesReader),
// and proxyError answers that with refuseBody too.

// bodyTooLarge is the 413's message for a body of n bytes (n < 0: a body
// that grew past the bound).
func (r *Router) bodyTooLarge(n int64) string {
	limit := fmt.Sprintf("settings.max_body_mb (%d MiB)", r.maxBody>>20)
	if r.maxBody%(1<<20) != 0 {
		limit = fmt.Sprintf("the router's bound (%d bytes)", r.maxBody)
	}
	if n < 0 {
		return "request body larger than " + limit
	}
	return fmt.Sprintf("request body of %d bytes is larger than %s", n, limit)
}

// refuseBody answers 413 (body of n bytes, n < 0: grown past the bound)
// and closes the connection after it. Unless the client waits for
// 100-continue (and so sends nothing more), what it still sends is read
// and dropped for up to LingerTime first: closing with unread data in the
// socket makes the kernel reset the connection, which can destroy the
// answer before the client has read it (a client still writing its body
// reads the answer only when the write is done or fails).
func (r *Router) refuseBody(w http.ResponseWriter, req *http.Request, body io.Reader, n int64) {
	rc := http.NewResponseController(w)
	// Reading the body after the answer (HTTP/1: the server would
	// otherwise stop reading it).
	_ = rc.EnableFullDuplex()
	w.Header().Set("Connection", "close")
	http.Error(w, r.bodyTooLarge(n), http.StatusRequestEntityTooLarge)
	if body == nil || req.Header.Get("Expect") != "" {
		return
	}
	_ = rc.Flush()
	var pool upstream.BufferPool
	buf := pool.Get()
	defer pool.Put(buf)
	for end := time.Now().Add(LingerTime); time.Now().Before(end); {
		if _, err := body.Read(buf); err != nil {
			return
		}
	}
}

// keepOpen is a body whose Close leaves the underlying one open.
type keepOpen struct{ io.Reader }

func (keepOpen) Close() error { return nil }
