// Package dashboard is ten's web dashboard, served on the bare domain and
// at /dashboard: a live instances view, an instance view with charts of
// the last hour and a live log tail, and restart/stop/weight for whoever
// may touch the instance. Sign-in takes an API token (admin or tenant)
// into a server-side session; the cookie is HttpOnly, SameSite=Strict and
// Secure over HTTPS; every POST needs the session's CSRF token and a
// same-origin Origin. A tenant sees only its own instances. Templates and
// assets are embedded: nothing is fetched from the network.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/units"
)

//go:embed assets
var assets embed.FS

var pages = template.Must(template.ParseFS(assets, "assets/*.html"))

// Instance is one row of the instances view.
type Instance struct {
	Instance    string  `json:"instance"`
	Service     string  `json:"service"`
	ID          string  `json:"id"`
	State       string  `json:"state"`
	Detail      string  `json:"detail,omitempty"`
	Health      string  `json:"health"`
	MemoryBytes uint64  `json:"memory_bytes"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	Weight      int     `json:"weight"`
	UptimeSec   float64 `json:"uptime_seconds"`
	IdleSec     float64 `json:"idle_seconds"`
	Restarts    uint32  `json:"restarts"`
	// Filled in by the dashboard from History.
	RPS        float64 `json:"rps"`
	Wakes      uint64  `json:"wakes"`
	LastWakeMs float64 `json:"last_wake_ms"`
	// Units and the commands that show the same as the page.
	ServiceUnit string   `json:"service_unit"`
	SocketUnit  string   `json:"socket_unit"`
	Commands    []string `json:"commands"`
}

// LogLine is one line of an instance's log.
type LogLine struct {
	Time    time.Time `json:"time"`
	Stream  string    `json:"stream"`
	Message string    `json:"message"`
}

// MemorySampler is a Backend that reads the periodic memory samples more
// cheaply than Instances, whose rows of every instance cost a quarter of a
// second every Step with 10,000 instances: a sleeper uses no memory.
type MemorySampler interface {
	// SampleMemory calls fn with the memory of each instance that runs.
	SampleMemory(ctx context.Context, fn func(inst units.Instance, bytes uint64))
	// Exists reports whether the instance exists (the history keeps only
	// those).
	Exists(inst units.Instance) bool
}

// Backend is what the dashboard needs from ten serve.
type Backend interface {
	// Instances lists every instance (the dashboard scopes it).
	Instances(ctx context.Context) ([]Instance, error)
	Restart(ctx context.Context, inst units.Instance) error
	Stop(ctx context.Context, inst units.Instance) error
	SetWeight(inst units.Instance, w int) error
	// FollowLogs sends the last lines of the instance's log and then new
	// ones until ctx ends or fn fails.
	// p is who asks (log streams are bounded per tenant).
	FollowLogs(ctx context.Context, p auth.Principal, inst units.Instance, last int, fn func(LogLine) error) error
	// SignIn checks a token for the client of r (with ten's lockout of
	// clients that keep sending bad tokens).
	SignIn(r *http.Request, token string) (auth.Principal, error)
}

// Handler serves the dashboard.
type Handler struct {
	b    Backend
	h    *History
	s    *sessions
	log  *slog.Logger
	mux  *http.ServeMux
	now  func() time.Time
	sdom string
}

// CookieName is the session cookie.
const CookieName = "ten_session"

// New returns the dashboard for domain over b, with h as its history.
func New(b Backend, h *History, domain string, log *slog.Logger) *Handler {
	d := &Handler{b: b, h: h, s: newSessions(), log: log, mux: http.NewServeMux(), now: time.Now, sdom: domain}
	static, _ := fs.Sub(assets, "assets")
	d.mux.Handle("GET /dashboard/static/", http.StripPrefix("/dashboard/static/", http.FileServerFS(static)))
	d.mux.HandleFunc("GET /{$}", d.page)
	d.mux.HandleFunc("GET /dashboard", d.page)
	d.mux.HandleFunc("GET /dashboard/{$}", d.page)
	d.mux.HandleFunc("POST /dashboard/signin", d.signIn)
	d.mux.HandleFunc("POST /dashboard/signout", d.session(true, d.signOut))
	d.mux.HandleFunc("GET /dashboard/api/instances", d.session(false, d.instances))
	d.mux.HandleFunc("GET /dashboard/api/instances/{id}/history", d.session(false, d.withInst(d.history)))
	d.mux.HandleFunc("GET /dashboard/api/instances/{id}/logs", d.session(false, d.withInst(d.logs)))
	d.mux.HandleFunc("POST /dashboard/api/instances/{id}/restart", d.session(true, d.withInst(d.restart)))
	d.mux.HandleFunc("POST /dashboard/api/instances/{id}/stop", d.session(true, d.withInst(d.stop)))
	d.mux.HandleFunc("POST /dashboard/api/instances/{id}/weight", d.session(true, d.withInst(d.weight)))
	return d
}

func (d *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	d.mux.ServeHTTP(w, r)
}

// Sample records the memory of every instance in the history and forgets
// instances that are gone; ten serve calls it every Step.
func (d *Handler) Sample(ctx context.Context) {
	now := d.now()
	if ms, ok := d.b.(MemorySampler); ok {
		ms.SampleMemory(ctx, func(inst units.Instance, bytes uint64) { d.h.Memory(inst, bytes, now) })
		d.h.RetainFunc(ms.Exists)
		return
	}
	ins, err := d.b.Instances(ctx)
	if err != nil {
		d.log.Debug("dashboard: sample", "err", err)
		return
	}
	keep := map[units.Instance]bool{}
	for _, in := range ins {
		inst := units.Instance{Service: in.Service, ID: in.ID}
		keep[inst] = true
		d.h.Memory(inst, in.MemoryBytes, now)
	}
	d.h.Retain(keep)
}

// RunSampler samples every Step until ctx ends.
func (d *Handler) RunSampler(ctx context.Context) {
	t := time.NewTicker(Step)
	defer t.Stop()
	d.Sample(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.Sample(ctx)
		}
	}
}

type pageData struct {
	SignedIn bool
	Admin    bool
	Tenant   string
	CSRF     string
	Domain   string
	Error    string
}

func (d *Handler) page(w http.ResponseWriter, r *http.Request) {
	// The error is a code, not text: a link must not be able to put words
	// on the sign-in page.
	data := pageData{Domain: d.sdom, Error: signInErrors[r.URL.Query().Get("error")]}
	if se := d.current(r); se != nil {
		data.SignedIn, data.Admin, data.Tenant, data.CSRF = true, se.p.Admin(), se.p.Tenant, se.csrf
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := pages.ExecuteTemplate(w, "index.html", data); err != nil {
		d.log.Error("dashboard: render", "err", err)
	}
}

func (d *Handler) current(r *http.Request) *session {
	c, err := r.Cookie(CookieName)
	if err != nil || len(c.Value) != 64 {
		return nil
	}
	return d.s.get(c.Value, d.now())
}

// sameOrigin checks that a POST comes from a page of this origin: Origin
// (or, where a browser leaves it out, Referer) must name this scheme and
// host.
func sameOrigin(r *http.Request) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	want := scheme + "://" + r.Host
	if o := r.Header.Get("Origin"); o != "" {
		return o == want
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && u.Scheme+"://"+u.Host == want
	}
	return false
}

func (d *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "sign-in must come from this site's own page (Origin check)", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	p, err := d.b.SignIn(r, r.PostForm.Get("token"))
	if err != nil {
		code := "invalid"
		var le *LockedError
		if errors.As(err, &le) {
			code = "locked"
			w.Header().Set("Retry-After", strconv.Itoa(int(le.RetryAfter.Seconds()+0.999)))
		}
		d.log.Info("dashboard: sign-in refused", "client", r.RemoteAddr, "err", err)
		http.Redirect(w, r, "/dashboard?error="+code, http.StatusSeeOther)
		return
	}
	id, _ := d.s.create(p, d.now())
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(SessionTTL.Seconds())})
	http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
}

var signInErrors = map[string]string{
	"invalid": "That token is unknown or was revoked.",
	"locked":  "Too many bad tokens from this address: wait a few seconds and try again.",
}

// LockedError is what Backend.SignIn returns for a client locked out after
// repeated bad tokens.
type LockedError struct{ RetryAfter time.Duration }

func (e *LockedError) Error() string {
	return fmt.Sprintf("too many bad tokens from this address; try again in %s", e.RetryAfter.Round(time.Second))
}

func (d *Handler) signOut(w http.ResponseWriter, r *http.Request, se *session) {
	if c, err := r.Cookie(CookieName); err == nil {
		d.s.drop(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
}

func jsonOut(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func jsonErr(w http.ResponseWriter, status int, format string, a ...any) {
	jsonOut(w, status, map[string]string{"error": fmt.Sprintf(format, a...)})
}

// session wraps a handler that needs a signed-in user; post handlers
// also need the session's CSRF token (X-CSRF-Token header or csrf form
// field) and a same-origin request.
func (d *Handler) session(post bool, f func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		se := d.current(r)
		if se == nil {
			jsonErr(w, http.StatusUnauthorized, "not signed in (or the session expired): sign in at /dashboard")
			return
		}
		if post {
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				r.Body = http.MaxBytesReader(w, r.Body, 4096)
				_ = r.ParseForm()
				tok = r.PostForm.Get("csrf")
			}
			if !sameToken(tok, se.csrf) || !sameOrigin(r) {
				jsonErr(w, http.StatusForbidden, "cross-site request refused: missing or wrong CSRF token or Origin")
				return
			}
		}
		f(w, r, se)
	}
}

func (d *Handler) withInst(f func(http.ResponseWriter, *http.Request, *session, units.Instance)) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, se *session) {
		inst, err := units.ParseInstance(r.PathValue("id"))
		if err != nil {
			jsonErr(w, http.StatusBadRequest, "%v", err)
			return
		}
		if !se.p.MayTouch(inst.ID) {
			// The same answer as for an instance that does not exist: a
			// tenant learns nothing about another's.
			jsonErr(w, http.StatusNotFound, "no instance %s", inst)
			return
		}
		f(w, r, se, inst)
	}
}

func (d *Handler) scoped(ctx context.Context, p auth.Principal) ([]Instance, error) {
	all, err := d.b.Instances(ctx)
	if err != nil {
		return nil, err
	}
	now := d.now()
	out := make([]Instance, 0, len(all))
	for _, in := range all {
		if !p.MayTouch(in.ID) {
			continue
		}
		inst := units.Instance{Service: in.Service, ID: in.ID}
		rps, wakes, last := d.h.Rates(inst, now)
		in.RPS, in.Wakes, in.LastWakeMs = rps, wakes, float64(last)/float64(time.Millisecond)
		in.ServiceUnit, in.SocketUnit = inst.ServiceUnit(), inst.SocketUnit()
		in.Commands = []string{
			"systemctl status " + in.ServiceUnit + " " + in.SocketUnit,
			"journalctl -u " + in.ServiceUnit + " -f",
			"systemctl show -p MemoryCurrent,CPUUsageNSec,ActiveState " + in.ServiceUnit,
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	return out, nil
}

func (d *Handler) instances(w http.ResponseWriter, r *http.Request, se *session) {
	ins, err := d.scoped(r.Context(), se.p)
	if err != nil {
		jsonErr(w, http.StatusServiceUnavailable, "list instances: %v", err)
		return
	}
	jsonOut(w, http.StatusOK, map[string]any{"instances": ins, "admin": se.p.Admin(), "tenant": se.p.Tenant, "time": d.now()})
}

func (d *Handler) history(w http.ResponseWriter, r *http.Request, se *session, inst units.Instance) {
	jsonOut(w, http.StatusOK, map[string]any{"instance": inst.String(), "step_seconds": int(Step.Seconds()), "buckets": d.h.Series(inst, d.now())})
}

func (d *Handler) restart(w http.ResponseWriter, r *http.Request, se *session, inst units.Instance) {
	if err := d.b.Restart(r.Context(), inst); err != nil {
		jsonErr(w, http.StatusConflict, "restart %s: %v", inst, err)
		return
	}
	d.log.Info("dashboard: restart", "instance", inst.String(), "tenant", se.p.Tenant)
	jsonOut(w, http.StatusOK, map[string]string{"restarted": inst.String()})
}

func (d *Handler) stop(w http.ResponseWriter, r *http.Request, se *session, inst units.Instance) {
	if err := d.b.Stop(r.Context(), inst); err != nil {
		jsonErr(w, http.StatusConflict, "stop %s: %v", inst, err)
		return
	}
	d.log.Info("dashboard: stop", "instance", inst.String(), "tenant", se.p.Tenant)
	jsonOut(w, http.StatusOK, map[string]string{"stopped": inst.String()})
}

func (d *Handler) weight(w http.ResponseWriter, r *http.Request, se *session, inst units.Instance) {
	r.Body = http.MaxBytesReader(w, r.Body, 1024)
	var req struct {
		Weight *int `json:"weight"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Weight == nil || *req.Weight < 0 || *req.Weight > 100 {
		jsonErr(w, http.StatusBadRequest, "body must be JSON like {\"weight\": 50} with 0 <= weight <= 100")
		return
	}
	if err := d.b.SetWeight(inst, *req.Weight); err != nil {
		jsonErr(w, http.StatusConflict, "weight %s: %v", inst, err)
		return
	}
	jsonOut(w, http.StatusOK, map[string]any{"instance": inst.String(), "weight": *req.Weight})
}

// logs streams the instance's log as Server-Sent Events.
func (d *Handler) logs(w http.ResponseWriter, r *http.Request, se *session, inst units.Instance) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": following the journal\n\n")
	if rc.Flush() != nil {
		return
	}
	ctx := r.Context()
	err := d.b.FollowLogs(ctx, se.p, inst, 50, func(l LogLine) error {
		b, _ := json.Marshal(l)
		if _, err := fmt.Fprintf(w, "event: log\ndata: %s\n\n", b); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && ctx.Err() == nil {
		b, _ := json.Marshal(map[string]string{"error": err.Error()})
		fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
		rc.Flush()
	}
}
