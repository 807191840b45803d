package router

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/tenhq/ten/units"
)

// FuzzRoute checks Host parsing: whatever the Host header, the router
// answers for an instance only when the host names it ({id}.{service}.DOMAIN
// or {service}.DOMAIN, any case, with a port or a trailing dot), answers 404
// or 503 with a message otherwise (never another status), passes hosts that
// are not under the domain to the admin API, and decides the same for a
// host that differs only in ASCII case.
func FuzzRoute(f *testing.F) {
	const domain = "example.test"
	r := New(domain, http.NotFoundHandler(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	for _, s := range []string{"api:prod", "api:staging", "web:x-1", "off:a"} {
		inst, err := units.ParseInstance(s)
		if err != nil {
			f.Fatal(err)
		}
		w := 1
		if inst.Service == "off" {
			w = 0
		}
		r.Put(Backend{Instance: inst, Socket: "/nonexistent/" + inst.ID + ".sock", Weight: w}, false)
	}
	for _, s := range []string{
		"prod.api.example.test", "api.example.test", "API.Example.Test:8080", "prod.api.example.test.",
		"example.test", "127.0.0.1:8080", "[::1]:8080", "localhost", "x.prod.api.example.test",
		"nope.example.test", "off.example.test", "a.off.example.test", ".example.test", "..example.test",
		"prod.api.example.test:", "[prod.api.example.test]", "prod.api.example.test:99999", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		b, handled, status, msg := r.route(host)
		if !handled {
			if b != nil || status != 0 {
				t.Fatalf("route(%q) passed on with %v %d", host, b, status)
			}
		} else if b == nil {
			if status != http.StatusNotFound && status != http.StatusServiceUnavailable {
				t.Fatalf("route(%q) answers %d", host, status)
			}
			if msg == "" || len(msg) > 2*len(host)+256 {
				t.Fatalf("route(%q) message %q", host, msg)
			}
		} else {
			h := strings.ToLower(host)
			if hh, _, err := net.SplitHostPort(h); err == nil {
				h = hh
			}
			h = strings.TrimSuffix(h, ".")
			inst := b.Instance
			if h != inst.ID+"."+inst.Service+"."+domain && h != inst.Service+"."+domain {
				t.Fatalf("route(%q) = %s", host, inst)
			}
		}
		// Only the choice among a service's instances may differ (weights).
		b2, handled2, status2, _ := r.route(asciiUpper(host))
		if handled2 != handled || status2 != status || (b == nil) != (b2 == nil) || (b != nil && b.Instance.Service != b2.Instance.Service) {
			t.Fatalf("route(%q) and route(%q) differ: %v %v %d / %v %v %d", host, asciiUpper(host), b, handled, status, b2, handled2, status2)
		}
	})
}

func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}
