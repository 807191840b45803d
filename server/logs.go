package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// logStreams holds a slot per open log stream (MaxLogStreams).
var logStreams = make(chan struct{}, MaxLogStreams)

// MaxLogStreams bounds the open log streams, each one a journalctl process.
const MaxLogStreams = 64

// registerLogs adds the journald-backed log endpoints:
//
//	GET /api/logs         JSON array of systemd.Entry, oldest first
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
		entries := []systemd.Entry{}
		err := systemd.ReadJournal(r.Context(), q, func(e systemd.Entry) error {
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
		select {
		case logStreams <- struct{}{}:
			defer func() { <-logStreams }()
		default:
			w.Header().Set("Retry-After", "10")
			writeJSON(w, http.StatusServiceUnavailable, APIError{Error: fmt.Sprintf("%d log streams are open already; close one, or read GET /api/logs instead", cap(logStreams))})
			return
		}
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
		entries := make(chan systemd.Entry, 64)
		done := make(chan error, 1)
		go func() {
			done <- systemd.ReadJournal(ctx, q, func(e systemd.Entry) error {
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

// logQuery parses the query string and applies the token's scope; it
// answers the request itself when the query is bad or not allowed.
func logQuery(w http.ResponseWriter, r *http.Request, follow bool) (systemd.JournalQuery, bool) {
	v := r.URL.Query()
	bad := func(format string, args ...any) (systemd.JournalQuery, bool) {
		writeErr(w, fmt.Errorf("%w: "+format, append([]any{ErrBadInput}, args...)...))
		return systemd.JournalQuery{}, false
	}
	q := systemd.JournalQuery{Follow: follow, Search: v.Get("search")}
	name := v.Get("instance")
	if name == "" && (v.Get("process") != "" || v.Get("id") != "") {
		name = v.Get("process") + ":" + v.Get("id")
	}
	if name != "" {
		inst, err := units.ParseInstance(name)
		if err != nil {
			return bad("%v", err)
		}
		if !mayTouch(w, r, inst) {
			return systemd.JournalQuery{}, false
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
		t, err := ParseSince(sv, time.Now())
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

// ParseSince reads a --since value: a duration back from now ("10m",
// "1h30m", "2d") or a time ("2025-01-02T15:04:05Z", "2025-01-02 15:04:05",
// "2025-01-02 15:04", "2025-01-02" in local time).
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("since %q: want a duration back from now (30s, 10m, 2h, 3d) or a time (2006-01-02 15:04:05, or RFC 3339)", s)
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
