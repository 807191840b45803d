package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/logs"
	"github.com/tenhq/ten/registry"
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
		if !ok || !a.knownService(w, r, q) {
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
		if len(entries) == 0 && q.Instance.Service != "" {
			// Nothing logged: say so when the instance is not there
			// either, rather than an empty answer that looks like a
			// quiet app. A stopped instance's logs stay readable.
			if _, err := a.b.Row(r.Context(), q.Instance); errors.Is(err, registry.ErrNotFound) {
				writeJSON(w, http.StatusNotFound, apitype.APIError{Error: fmt.Sprintf("no instance %s, and nothing in the journal of it", q.Instance)})
				return
			}
		}
		writeJSON(w, http.StatusOK, entries)
	})
	api.HandleFunc("GET /api/logs/stream", func(w http.ResponseWriter, r *http.Request) {
		q, ok := logQuery(w, r, true)
		if !ok || !a.knownService(w, r, q) {
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

// knownService answers 404 for a query about a service tenement.toml does
// not declare (a typo would otherwise read as an app that logs nothing),
// and reports whether the query may go on. The journal of a service taken
// out of the config is still there for journalctl -u 'tenement-NAME@*'.
func (a *API) knownService(w http.ResponseWriter, r *http.Request, q journal.Query) bool {
	svc := q.Service
	if svc == "" {
		svc = q.Instance.Service
	}
	if svc == "" || a.cfg == nil {
		return true
	}
	if _, ok := a.cfg.Services[svc]; ok {
		return true
	}
	err := a.unknownServiceHint(r, fmt.Errorf("logs: %w %q", registry.ErrUnknownService, svc))
	writeJSON(w, http.StatusNotFound, apitype.APIError{Error: err.Error()})
	return false
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
