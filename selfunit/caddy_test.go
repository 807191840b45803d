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
