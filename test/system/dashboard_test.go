package system

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/tenhq/ten/internal/systemtest"
)

// chromiumPath is Debian's chromium (apt-get install chromium).
const chromiumPath = "/usr/bin/chromium"

// artifactsDir is where browser tests save screenshots: $TEN_ARTIFACTS,
// else test/system/artifacts in the checkout (gitignored).
func artifactsDir(t *testing.T) string {
	d := os.Getenv("TEN_ARTIFACTS")
	if d == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatal(err)
		}
		d = filepath.Join(root, "test", "system", "artifacts")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// browser starts a headless Chromium with a fresh profile and collects
// every console error, uncaught exception and error log entry of the pages.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		msg := fmt.Sprintf("chromium is not installed (%v): apt-get install chromium", err)
		if os.Getenv(systemtest.EnvRequire) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	b := &browser{ctx: ctx}
	chromedp.ListenTarget(ctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value))
				}
				msg = "console.error: " + strings.Join(parts, " ")
			}
		case *runtime.EventExceptionThrown:
			msg = "exception: " + e.ExceptionDetails.Error()
		case *log.EventEntryAdded:
			if e.Entry.Level == log.LevelError {
				msg = "log: " + e.Entry.Text + " " + e.Entry.URL
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.errors = append(b.errors, msg)
			b.mu.Unlock()
		}
	})
	if err := chromedp.Run(ctx, log.Enable(), runtime.Enable()); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) screenshot(t *testing.T, name string) string {
	t.Helper()
	var png []byte
	b.run(t, "screenshot "+name, chromedp.FullScreenshot(&png, 100))
	p := filepath.Join(artifactsDir(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	return p
}

// stateOf waits until the instances table shows inst in state.
func (b *browser) waitState(t *testing.T, inst, state string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, within)
	defer cancel()
	sel := fmt.Sprintf(`#instances tr[data-instance=%q][data-state=%q]`, inst, state)
	if err := chromedp.Run(ctx, chromedp.WaitVisible(sel, chromedp.ByQuery)); err != nil {
		var rows string
		_ = chromedp.Run(b.ctx, chromedp.Text("#instances", &rows, chromedp.ByQuery))
		t.Fatalf("page never showed %s %s within %s: %v\n%s", inst, state, within, err, rows)
	}
}

// The dashboard in a real browser (headless Chromium): sign in, the
// instances view updating live as an instance wakes and sleeps, a log line
// appearing in the instance view, a restart from the page, a tenant seeing
// only its own instances, CSRF and cookie attributes, no console errors.
func TestDashboardInBrowser(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO --mode activation"
activation = "socket"
idle_timeout = 2

[service.api]
command = "ECHO --mode activation"
activation = "socket"

[instances]
web = ["alpha", "beta"]
api = ["alpha"]
`)
	adminTok, err := os.ReadFile(filepath.Join(s.dir, "data", "api_token"))
	if err != nil {
		t.Fatal(err)
	}
	_, tenantTok := s.newToken("--tenant", "alpha", "--description", "dashboard test")
	base := "http://" + s.addr
	b := newBrowser(t)

	// Sign in as admin.
	b.run(t, "open the sign-in page",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", strings.TrimSpace(string(adminTok)), chromedp.ByID),
		chromedp.Click("#signin-button", chromedp.ByID),
		chromedp.WaitVisible(`#instances tr[data-instance="web:alpha"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#instances tr[data-instance="web:beta"]`, chromedp.ByQuery),
	)
	// The session cookie: HttpOnly, SameSite=Strict (Secure only over HTTPS).
	var cookies []*network.Cookie
	b.run(t, "cookies", chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().WithURLs([]string{base}).Do(ctx)
		return err
	}))
	var session *network.Cookie
	for _, c := range cookies {
		if c.Name == "ten_session" {
			session = c
		}
	}
	if session == nil || !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie %+v", session)
	}

	// Sleeping → running after a request → sleeping again, live on the page.
	b.waitState(t, "web:alpha", "sleeping", 20*time.Second)
	b.screenshot(t, "dashboard-sleeping.png")
	s.mustGet("alpha.web.localhost", "/")
	b.waitState(t, "web:alpha", "running", 10*time.Second)
	b.screenshot(t, "dashboard-running.png")
	b.waitState(t, "web:alpha", "sleeping", 20*time.Second)
	t.Log("web:alpha went sleeping → running → sleeping on the page without a reload")

	// The instance view (of api:alpha, which never sleeps): a log line
	// appears live; charts are drawn.
	b.run(t, "open the instance view",
		chromedp.Navigate(base+"/dashboard#/i/api:alpha"),
		chromedp.WaitVisible("#d-log", chromedp.ByID),
		chromedp.WaitVisible(`#f-state`, chromedp.ByID),
	)
	line := fmt.Sprintf("hello-from-the-browser-test-%d", time.Now().UnixNano())
	for i := 0; i < 5; i++ {
		s.mustGet("alpha.api.localhost", "/log?msg="+line)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	err = chromedp.Run(ctx, chromedp.Poll(fmt.Sprintf(`document.getElementById("d-log").textContent.includes(%q)`, line), nil, chromedp.WithPollingInterval(200*time.Millisecond)))
	cancel()
	if err != nil {
		t.Fatalf("log line %q never appeared in the page: %v", line, err)
	}
	var units string
	b.run(t, "units", chromedp.Text("#d-units", &units, chromedp.ByID))
	for _, want := range []string{"tenement-api@alpha.service", "tenement-api@alpha.socket", "journalctl -u tenement-api@alpha.service"} {
		if !strings.Contains(units, want) {
			t.Errorf("instance view lacks %q:\n%s", want, units)
		}
	}
	// Charts: wait for the history (drawn every 5 s) to include the requests.
	ctx, cancel = context.WithTimeout(b.ctx, 15*time.Second)
	err = chromedp.Run(ctx, chromedp.Poll(`(() => { const c = document.querySelector("#c-req").closest("figure").querySelector("figcaption span"); return c && c.textContent !== "max 1" && document.querySelectorAll("#c-req polyline, #c-lat polyline, #c-mem polyline").length === 4; })()`, nil, chromedp.WithPollingInterval(250*time.Millisecond)))
	cancel()
	if err != nil {
		t.Errorf("charts not drawn with the requests: %v", err)
	}

	// Restart from the page: the service gets a new main PID.
	before := mainPID(t, "api:alpha")
	if before == 0 {
		t.Fatal("api:alpha is not running")
	}
	b.run(t, "restart from the page",
		chromedp.Click("#d-restart", chromedp.ByID),
		chromedp.Poll(`document.getElementById("d-msg").textContent === "restart: done"`, nil, chromedp.WithPollingInterval(100*time.Millisecond)),
	)
	if after := mainPID(t, "api:alpha"); after == before || after == 0 {
		t.Errorf("restart from the page: main PID %d before, %d after", before, after)
	} else {
		t.Logf("restart from the page: main PID %d -> %d", before, after)
	}
	b.screenshot(t, "dashboard-instance.png")

	// Weight from the page.
	b.run(t, "set the weight from the page",
		chromedp.Focus("#d-weight", chromedp.ByID),
		chromedp.SetValue("#d-weight", "40", chromedp.ByID),
		chromedp.Click("#d-setweight", chromedp.ByID),
		chromedp.Poll(`document.getElementById("d-msg").textContent === "weight: done"`, nil, chromedp.WithPollingInterval(100*time.Millisecond)),
		chromedp.Poll(`document.getElementById("f-weight").textContent === "40"`, nil, chromedp.WithPollingInterval(100*time.Millisecond)),
	)
	var rows []struct {
		Instance string `json:"instance"`
		Weight   int    `json:"weight"`
	}
	out := s.mustTen("--json", "ps", "--all")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("ten --json ps --all: %v\n%s", err, out)
	}
	for _, r := range rows {
		if r.Instance == "api:alpha" && r.Weight != 40 {
			t.Errorf("weight set from the page: ten ps says %d, want 40", r.Weight)
		}
	}

	// Actions need the session's CSRF token and a same-origin Origin.
	post := func(origin, csrf string) int {
		req, _ := http.NewRequest("POST", base+"/dashboard/api/instances/api:alpha/restart", strings.NewReader("{}"))
		req.AddCookie(&http.Cookie{Name: "ten_session", Value: session.Value})
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if csrf != "" {
			req.Header.Set("X-CSRF-Token", csrf)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var csrf string
	b.run(t, "csrf token", chromedp.Evaluate(`document.body.dataset.csrf`, &csrf))
	if code := post(base, ""); code != http.StatusForbidden {
		t.Errorf("POST without CSRF token: %d, want 403", code)
	}
	if code := post("http://evil.example", csrf); code != http.StatusForbidden {
		t.Errorf("POST from another origin: %d, want 403", code)
	}
	// A token one character off (never the same: the first is changed).
	wrong := "0" + csrf[1:]
	if csrf[0] == '0' {
		wrong = "1" + csrf[1:]
	}
	if code := post(base, wrong); code != http.StatusForbidden {
		t.Errorf("POST with a wrong CSRF token: %d, want 403", code)
	}

	// Sign out, then sign in as tenant alpha: beta is nowhere.
	b.run(t, "sign out",
		chromedp.Navigate(base+"/dashboard#/"),
		chromedp.WaitVisible("#signout", chromedp.ByID),
		chromedp.Click("#signout", chromedp.ByID),
		chromedp.WaitVisible("#token", chromedp.ByID),
	)
	req, _ := http.NewRequest("GET", base+"/dashboard/api/instances", nil)
	req.AddCookie(&http.Cookie{Name: "ten_session", Value: session.Value})
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("old session after sign-out: %v %v, want 401", resp.StatusCode, err)
	}
	b.run(t, "sign in as tenant alpha",
		chromedp.SendKeys("#token", tenantTok, chromedp.ByID),
		chromedp.Click("#signin-button", chromedp.ByID),
		chromedp.WaitVisible(`#instances tr[data-instance="web:alpha"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#instances tr[data-instance="api:alpha"]`, chromedp.ByQuery),
	)
	time.Sleep(1500 * time.Millisecond) // a few more live updates
	var html string
	b.run(t, "tenant page", chromedp.OuterHTML("html", &html, chromedp.ByQuery))
	if strings.Contains(html, "beta") {
		t.Errorf("tenant alpha's page mentions beta")
	}
	b.screenshot(t, "dashboard-tenant.png")
	var tenantCookies []*network.Cookie
	b.run(t, "cookies", chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		tenantCookies, err = network.GetCookies().WithURLs([]string{base}).Do(ctx)
		return err
	}))
	for _, c := range tenantCookies {
		if c.Name != "ten_session" {
			continue
		}
		for _, path := range []string{"/dashboard/api/instances/web:beta/history", "/dashboard/api/instances/web:beta/logs"} {
			req, _ := http.NewRequest("GET", base+path, nil)
			req.AddCookie(&http.Cookie{Name: "ten_session", Value: c.Value})
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("tenant alpha GET %s: %d, want 404", path, resp.StatusCode)
			}
		}
	}

	// Nothing went wrong in the page.
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errors) > 0 {
		t.Errorf("console errors in the page:\n%s", strings.Join(b.errors, "\n"))
	}
}
