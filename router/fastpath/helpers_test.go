package fastpath

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// recorder counts what the router observes.
type recorder struct {
	mu       sync.Mutex
	requests map[int]int
	wakes    int
}

func (r *recorder) ObserveRequest(_ units.Instance, code int, _ time.Duration) {
	r.mu.Lock()
	r.requests[code]++
	r.mu.Unlock()
}

func (r *recorder) ObserveWake(units.Instance, time.Duration, error) {
	r.mu.Lock()
	r.wakes++
	r.mu.Unlock()
}

// app serves HTTP on a unix socket, as an instance behind its systemd socket.
func app(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func newTestRouter(t testing.TB) (*router.Router, *recorder) {
	rec := &recorder{requests: map[int]int{}}
	r := router.New("example.test", http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), router.Options{Observer: rec})
	return r, rec
}
