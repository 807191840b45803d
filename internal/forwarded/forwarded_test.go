package forwarded

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClient(t *testing.T) {
	lo := netip.MustParsePrefix("127.0.0.0/8")
	lan := netip.MustParsePrefix("10.0.0.0/8")
	trusted := func(ip string) bool {
		a, err := netip.ParseAddr(ip)
		return err == nil && (lo.Contains(a) || lan.Contains(a))
	}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		trusted      func(string) bool
		want         string
	}{
		{"no proxy trusted", "127.0.0.1:5000", []string{"6.6.6.6"}, nil, "127.0.0.1"},
		{"untrusted peer's header ignored", "192.0.2.9:5000", []string{"127.0.0.1"}, trusted, "192.0.2.9"},
		{"trusted peer, no header", "127.0.0.1:5000", nil, trusted, "127.0.0.1"},
		{"behind caddy", "127.0.0.1:5000", []string{"203.0.113.7"}, trusted, "203.0.113.7"},
		{"forged left part ignored", "127.0.0.1:5000", []string{"1.1.1.1, 203.0.113.7"}, trusted, "203.0.113.7"},
		{"two trusted hops", "127.0.0.1:5000", []string{"1.1.1.1, 203.0.113.7, 10.1.2.3"}, trusted, "203.0.113.7"},
		{"several header lines", "127.0.0.1:5000", []string{"1.1.1.1", "203.0.113.7", "10.1.2.3"}, trusted, "203.0.113.7"},
		{"all trusted", "127.0.0.1:5000", []string{"10.0.0.1, 127.0.0.2"}, trusted, "10.0.0.1"},
		{"garbage stops at its writer", "127.0.0.1:5000", []string{"junk, 10.0.0.4"}, trusted, "10.0.0.4"},
		{"garbage last", "127.0.0.1:5000", []string{"203.0.113.7, junk"}, trusted, "127.0.0.1"},
		{"ipv6 and mapped", "[::ffff:127.0.0.1]:5000", []string{"2001:db8::1"}, trusted, "2001:db8::1"},
		{"mapped client", "127.0.0.1:5000", []string{"::ffff:203.0.113.7"}, trusted, "203.0.113.7"},
		{"empty entries", "127.0.0.1:5000", []string{" , 203.0.113.7 ,"}, trusted, "203.0.113.7"},
	} {
		if got := Client(tc.remote, tc.xff, tc.trusted); got != tc.want {
			t.Errorf("%s: Client(%q, %q) = %q, want %q", tc.name, tc.remote, tc.xff, got, tc.want)
		}
	}
	// A long chain of trusted hops ends after MaxHops.
	chain := strings.TrimSuffix(strings.Repeat("10.0.0.1, ", 100), ", ")
	if got := Client("127.0.0.1:1", []string{"203.0.113.7, " + chain}, trusted); got != "10.0.0.1" {
		t.Errorf("long chain: %q", got)
	}
}

func FuzzClient(f *testing.F) {
	f.Add("127.0.0.1:1", "1.2.3.4, 10.0.0.1")
	f.Add("[::1]:1", ",,, ::1")
	trusted := func(ip string) bool { return strings.HasPrefix(ip, "10.") || ip == "127.0.0.1" || ip == "::1" }
	f.Fuzz(func(t *testing.T, remote, xff string) {
		got := Client(remote, []string{xff}, trusted)
		// The answer is the peer or an address from the header, never
		// more than what was given.
		if got != Host(remote) && !strings.Contains(xff, strings.TrimPrefix(got, "::ffff:")) {
			if _, err := netip.ParseAddr(got); err != nil {
				t.Fatalf("Client(%q, %q) = %q: neither the peer nor an address", remote, xff, got)
			}
		}
	})
}
