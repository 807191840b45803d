package api

import (
	"fmt"
	"net/http"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/logs"
	"github.com/tenhq/ten/systemd/journal"
	"github.com/tenhq/ten/units"
)

// registerLogs adds the journald-backed log endpoints:
//
//	GET /api/logs         JSON array of journal.Entry, oldest first
//	GET /api/logs/stream  Server-Sent Events, one entry per "data:" line
//
// The query is logs.ParseQuery's. Without an instance: every instance the
// token may see.
func (a *API) registerLogs(api *http.ServeMux) {
	api.HandleFunc("GET /api/logs", func(w http.ResponseWriter, r *http.Request) {
		q, ok := logQuery(w, r, false)
		if !ok {
			return
		}
		// Each read is a journalctl process and holds its entries until
		// it answers: bound them.
		release, status, msg := a.reads.Acquire(principalOf(r))
		if release == nil {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, status, apitype.APIError{Error: msg})
			return
		}
		defer release()
		entries, err := logs.Read(r, q)
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
		release, status, msg := a.streams.Acquire(principalOf(r))
		if release == nil {
			w.Header().Set("Retry-After", "10")
			writeJSON(w, status, apitype.APIError{Error: msg})
			return
		}
		defer release()
		logs.Stream(w, r, q)
	})
}

// logQuery parses the query string and applies the token's scope; it
// answers the request itself when the query is bad or not allowed.
func logQuery(w http.ResponseWriter, r *http.Request, follow bool) (journal.Query, bool) {
	p := principalOf(r)
	q, err := logs.ParseQuery(r.URL.Query(), follow, p.Tenant, func(inst units.Instance) string { return instanceDenied(p, inst) })
	if msg, denied := logs.IsDenied(err); denied {
		writeJSON(w, http.StatusForbidden, apitype.APIError{Error: msg})
		return q, false
	}
	if err != nil {
		writeErr(w, err)
		return q, false
	}
	return q, true
}
