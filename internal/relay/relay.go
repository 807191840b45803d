// Package relay copies bytes both ways between two connections until both
// directions end, passing each direction's end on as a half-close so that
// protocols that shut down one side first keep working. The shim, ten's
// userspace L4 proxy and tenbox's port publishing all relay this way.
package relay

import (
	"errors"
	"io"
	"net"
)

type closeWriter interface{ CloseWrite() error }

// Both relays a ↔ b and returns when both directions are done. The error is
// the first copy error other than a closed connection (nil on a clean end).
// It closes neither connection: the caller owns them.
func Both(a, b net.Conn) error {
	errs := make(chan error, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		errs <- err
	}
	go pipe(a, b)
	go pipe(b, a)
	return errors.Join(<-errs, <-errs)
}
