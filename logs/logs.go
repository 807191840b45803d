// Package logs is the journal side of ten's admin API: the query of a log
// request (GET /api/logs, /api/logs/stream) scoped to the caller's token,
// the bound on open log streams (each is a journalctl process) shared by
// the API and the dashboard, and the Server-Sent Events stream.
package logs

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/strictjson"
	"github.com/tenhq/ten/systemd/journal"
	"github.com/tenhq/ten/units"
)

// DeniedError means the caller's token may not read the instance's logs
// (403); Msg says why.
type DeniedError struct{ Msg string }

// Error returns Msg.
func (e *DeniedError) Error() string { return e.Msg }

// ParseQuery reads a log request's query string: instance=SERVICE:ID (or
// tenement's process=SERVICE&id=ID, or process=SERVICE alone for every
// instance of the service), search, limit, since (a duration like 10m, or
// a time), level=stdout|stderr. deny says why the caller may not touch an
// instance ("" when it may); tenant scopes a query that names none. A bad
// query is strictjson.ErrBadInput, a denied one a *DeniedError.
func ParseQuery(v url.Values, follow bool, tenant string, deny func(units.Instance) string) (journal.Query, error) {
	bad := func(format string, args ...any) (journal.Query, error) {
		return journal.Query{}, fmt.Errorf("%w: "+format, append([]any{strictjson.ErrBadInput}, args...)...)
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
		if msg := deny(inst); msg != "" {
			return journal.Query{}, &DeniedError{Msg: msg}
		}
		q.Instance = inst
	}
	q.Tenant = tenant
	switch lv := v.Get("level"); lv {
	case "", "all":
	case "stdout", "stderr":
		q.Stream = lv
	default:
		return bad("level %q: want stdout or stderr", lv)
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 || n > apitype.MaxLogLimit {
			return bad("limit %q: want a number from 0 to %d", l, apitype.MaxLogLimit)
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
	return q, nil
}

// IsDenied reports whether err is a *DeniedError, and its message.
func IsDenied(err error) (string, bool) {
	var d *DeniedError
	if errors.As(err, &d) {
		return d.Msg, true
	}
	return "", false
}
