package selfunit

import (
	"strings"
	"testing"
)

func TestCaddyfileOf(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// systemctl show's form, Debian's unit.
		{"{ path=/usr/bin/caddy ; argv[]=/usr/bin/caddy run --environ --config /etc/caddy/Caddyfile ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }", "/etc/caddy/Caddyfile"},
		{"{ path=/usr/bin/caddy ; argv[]=/usr/bin/caddy run --config=/srv/Caddyfile --adapter caddyfile ; ignore_errors=no }", "/srv/Caddyfile"},
		// No --config: Caddy's default for the package's unit.
		{"{ path=/usr/bin/caddy ; argv[]=/usr/bin/caddy run --environ ; ignore_errors=no }", DefaultCaddyfile},
		{"", DefaultCaddyfile},
		// A path after the argv segment is not taken for --config's.
		{"{ path=/usr/bin/caddy ; argv[]=/usr/bin/caddy run --config ; status=0/0 }", DefaultCaddyfile},
	} {
		if got := CaddyfileOf(c.in); got != c.want {
			t.Errorf("CaddyfileOf(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestValidDomain(t *testing.T) {
	for _, d := range []string{"example.com", "localhost", "a-b.example.co.uk", "EXAMPLE.com", "example.com.", "127.0.0.1", strings.Repeat("a", 63) + ".com"} {
		if err := ValidDomain(d); err != nil {
			t.Errorf("ValidDomain(%q): %v", d, err)
		}
	}
	for _, d := range []string{"", ".", "bad domain", "a/b", "x{y", "example.com {\n\trespond hi\n}", "-a.com", "a-.com", "a..com", "*.example.com", "ex_ample.com", strings.Repeat("a", 64) + ".com", strings.Repeat("a.", 127) + "com"} {
		if err := ValidDomain(d); err == nil {
			t.Errorf("ValidDomain(%q) accepted it", d)
		} else if !strings.Contains(err.Error(), "is not a domain name") {
			t.Errorf("ValidDomain(%q): %v", d, err)
		}
	}
}

// The DNS challenge reads tenement's variable names, so that a
// caddy.service environment made for tenement's Caddyfile keeps working.
func TestCaddyfileDNS(t *testing.T) {
	for _, tc := range []struct{ provider, dns, env string }{
		{"cloudflare", "\t\tdns cloudflare {env.CF_API_TOKEN}\n", "CF_API_TOKEN"},
		{"digitalocean", "\t\tdns digitalocean {env.DO_AUTH_TOKEN}\n", "DO_AUTH_TOKEN"},
		{"porkbun", "\t\tdns porkbun {env.DNS_API_TOKEN}\n", "DNS_API_TOKEN"},
		{"route53", "\t\tdns route53\n", "AWS_ACCESS_KEY_ID"},
	} {
		text := Caddyfile(Caddy{Domain: "example.com", Upstream: "localhost:8080", Services: []string{"api"}, DNSProvider: tc.provider})
		if !strings.Contains(text, "*.api.example.com {\n\ttls {\n"+tc.dns+"\t}\n") || !strings.Contains(text, "# The DNS challenge reads") || !strings.Contains(text, tc.env) {
			t.Errorf("%s:\n%s", tc.provider, text)
		}
	}
	if text := Caddyfile(Caddy{Domain: "example.com", Upstream: "localhost:8080", Services: []string{"api"}}); strings.Contains(text, "dns") || strings.Contains(text, "tls") {
		t.Errorf("no provider:\n%s", text)
	}
}

func TestCaddyCheck(t *testing.T) {
	for _, c := range []Caddy{
		{Domain: "example.com"},
		{Domain: "example.com", DNSProvider: "cloudflare", Email: "ops@example.com"},
		{Domain: "example.com", DNSProvider: "route53", Email: "first.last+tag@mail.example.co.uk"},
	} {
		if err := c.Check(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for _, tc := range []struct {
		c    Caddy
		want string
	}{
		{Caddy{Domain: "bad domain"}, "not a domain name"},
		{Caddy{Domain: "example.com", DNSProvider: "cloud flare"}, "--dns-provider"},
		{Caddy{Domain: "example.com", DNSProvider: "cloudflare}\n:80 {"}, "--dns-provider"},
		{Caddy{Domain: "example.com", DNSProvider: "Cloudflare"}, "--dns-provider"},
		{Caddy{Domain: "example.com", DNSProvider: strings.Repeat("a", 41)}, "--dns-provider"},
		{Caddy{Domain: "example.com", Email: "ops"}, "--email"},
		{Caddy{Domain: "example.com", Email: "Ops <ops@example.com>"}, "--email"},
		{Caddy{Domain: "example.com", Email: "ops@example.com\n}\n:80 {"}, "--email"},
		{Caddy{Domain: "example.com", Email: "o{ps}@example.com"}, "--email"},
	} {
		if err := tc.c.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.c, err, tc.want)
		}
	}
}
