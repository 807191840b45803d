package router

import (
	"context"
	"time"

	"github.com/tenhq/ten/router/upstream"
)

// dialTimeout bounds connecting to an instance's socket: systemd holds it,
// so connect returns at once (the connection waits in the backlog); a
// longer wait means the socket is gone or its backlog is full.
const dialTimeout = 5 * time.Second

func (b *Route) dial() (*upstream.Conn, error) {
	// A directly run app that does not listen (it restarts) is woken and
	// waited for up to its startup_timeout.
	d := dialTimeout
	if b.StartupTimeout > d {
		d = b.StartupTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, err := b.dialUp(ctx, "", "")
	if err != nil {
		return nil, err
	}
	return upstream.NewConn(c), nil
}

// closeIdle drops every idle connection to the instance (both pools: the
// fast path's and the http.Transport's of the fallback path and probes).
func (b *Route) closeIdle() {
	b.transport.CloseIdleConnections()
	b.pool.CloseIdle(false)
}
