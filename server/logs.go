package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/systemd/journal"
	"github.com/tenhq/ten/units"
)

// Log stream slots: each open stream is a journalctl process. One tenant
// may hold MaxTenantLogStreams of them, all tenants together
// MaxLogStreams-AdminLogStreams, so that tenants can never take the last
// AdminLogStreams from an admin.
const (
	MaxLogStreams       = 64
	MaxTenantLogStreams = 8
	AdminLogStreams     = 8
)

// registerLogs adds the journald-backed log endpoints:
//
//	GET /api/logs         JSON array of journal.Entry, oldest first
//	GET /api/logs/stream  Server-Sent Events, one entry per "data:" line
//
// Query: instance=SERVICE:ID (or tenement's process=SERVICE&id=ID), search,
// limit, since (a duration like 10m, or a time), level=stdout|stderr.
// Without an instance: every instance the token may see.
func (s *Server) registerLogs(api *http.ServeMux) {
	api.HandleFunc("GET /api/logs", func(w http.ResponseWriter, r *http.Request) {
		q, ok := logQuery(w, r, false)
		if !ok {
			return
		}
		entries := []journal.Entry{}
		err := journal.Read(r.Context(), q, func(e journal.Entry) error {
			entries = append(entries, e)
			return nil
		})
		if err != nil {
			writeErr(w, fmt.Errorf("read logs: %w", err))
			return
		}
		writeJSON(w, http.StatusOK, entries)
	})
	api.HandleFunc("GET /api/logs/stream", func(w http.ResponseWriter, r *http.Request) {
		q, ok := logQuery(w, r, true)
		if !ok {
			return
		}
		// Each stream is a journalctl process: bound them.
		release, status, msg := s.streams.acquire(principalOf(r))
		if release == nil {
			w.Header().Set("Retry-After", "10")
			writeJSON(w, status, APIError{Error: msg})
			return
		}
		defer release()
		rc := http.NewResponseController(w)
		// The stream lives as long as the client: no write deadline.
		_ = rc.SetWriteDeadline(time.Time{})
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, ": following the journal\n\n")
		if err := rc.Flush(); err != nil {
			return
		}
		ctx := r.Context()
		entries := make(chan journal.Entry, 64)
		done := make(chan error, 1)
		go func() {
			done <- journal.Read(ctx, q, func(e journal.Entry) error {
				select {
				case entries <- e:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		}()
		// A comment now and then keeps proxies from closing an idle stream
		// and notices a client that went away.
		keepalive := time.NewTicker(15 * time.Second)
		defer keepalive.Stop()
		for {
			select {
			case e := <-entries:
				b, _ := json.Marshal(e)
				fmt.Fprintf(w, "event: log\nid: %s\ndata: %s\n\n", e.Cursor, b)
			case <-keepalive.C:
				fmt.Fprint(w, ": keepalive\n\n")
			case err := <-done:
				if err != nil && ctx.Err() == nil {
					b, _ := json.Marshal(APIError{Error: "read logs: " + err.Error()})
					fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
					rc.Flush()
				}
				return
			case <-ctx.Done():
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	})
}

// streamSlots counts open log streams per tenant and in all (see
// MaxLogStreams). It is safe for concurrent use.
type streamSlots struct {
	mu       sync.Mutex // mu guards the following
	total    int
	tenants  int            // streams held by tenant tokens
	byTenant map[string]int // tenant -> open streams
}

// acquire takes a slot for p, or returns a nil release with the status
// (429: this tenant has its share; 503: ten has none left) and the reason.
func (st *streamSlots) acquire(p auth.Principal) (release func(), status int, msg string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.byTenant == nil {
		st.byTenant = map[string]int{}
	}
	if p.Admin() {
		if st.total >= MaxLogStreams {
			return nil, http.StatusServiceUnavailable, fmt.Sprintf("all %d log streams are open; close one, or read GET /api/logs instead", MaxLogStreams)
		}
		st.total++
		return sync.OnceFunc(func() {
			st.mu.Lock()
			st.total--
			st.mu.Unlock()
		}), 0, ""
	}
	t := p.Tenant
	if st.byTenant[t] >= MaxTenantLogStreams {
		return nil, http.StatusTooManyRequests, fmt.Sprintf("tenant %q has %d log streams open, the most a tenant may; close one, or read GET /api/logs instead", t, MaxTenantLogStreams)
	}
	if st.tenants >= MaxLogStreams-AdminLogStreams || st.total >= MaxLogStreams {
		return nil, http.StatusServiceUnavailable, fmt.Sprintf("the %d log streams tenants may open are all open; try again later, or read GET /api/logs instead", MaxLogStreams-AdminLogStreams)
	}
	st.total++
	st.tenants++
	st.byTenant[t]++
	return sync.OnceFunc(func() {
		st.mu.Lock()
		st.total--
		st.tenants--
		if st.byTenant[t]--; st.byTenant[t] == 0 {
			delete(st.byTenant, t)
		}
		st.mu.Unlock()
	}), 0, ""
}

// logQuery parses the query string and applies the token's scope; it
// answers the request itself when the query is bad or not allowed.
func logQuery(w http.ResponseWriter, r *http.Request, follow bool) (journal.Query, bool) {
	v := r.URL.Query()
	bad := func(format string, args ...any) (journal.Query, bool) {
		writeErr(w, fmt.Errorf("%w: "+format, append([]any{ErrBadInput}, args...)...))
		return journal.Query{}, false
	}
	q := journal.Query{Follow: follow, Search: v.Get("search")}
	name := v.Get("instance")
	svc := v.Get("process")
	if svc == "" {
		svc = v.Get("service")
	}
	if name == "" && v.Get("id") != "" {
		name = svc + ":" + v.Get("id")
	} else if name == "" && svc != "" {
		// tenement's ?process=api alone: every instance of the service
		// (of the token's tenant only, for a tenant token).
		if err := config.CheckName("process", svc); err != nil {
			return bad("%v", err)
		}
		q.Service = svc
	}
	if name != "" {
		inst, err := units.ParseInstance(name)
		if err != nil {
			return bad("%v", err)
		}
		if !mayTouch(w, r, inst) {
			return journal.Query{}, false
		}
		q.Instance = inst
	}
	q.Tenant = principalOf(r).Tenant
	switch lv := v.Get("level"); lv {
	case "", "all":
	case "stdout", "stderr":
		q.Stream = lv
	default:
		return bad("level %q: want stdout or stderr", lv)
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 || n > MaxLogLimit {
			return bad("limit %q: want a number from 0 to %d", l, MaxLogLimit)
		}
		q.Limit = n
	} else if follow {
		q.Limit = 10 // like journalctl -f
	}
	if sv := v.Get("since"); sv != "" {
		t, err := journal.ParseSince(sv, time.Now())
		if err != nil {
			return bad("%v", err)
		}
		q.Since = t
	}
	if err := q.Validate(); err != nil {
		return bad("%v", err)
	}
	return q, true
}

// systemdCat returns the path of systemd-cat, or "" when it is missing
// (then stdout and stderr share one priority; see units.Options.Cat).
var systemdCat = sync.OnceValue(func() string {
	p, err := exec.LookPath("systemd-cat")
	if err != nil {
		return ""
	}
	return p
})
