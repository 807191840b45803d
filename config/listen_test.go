package config

import (
	"strings"
	"testing"
)

func TestParseListen(t *testing.T) {
	for _, tc := range []struct {
		in, want    string
		perInstance bool
	}{
		{"tcp://127.0.0.1:7000", "tcp://127.0.0.1:7000", false},
		{"tcp://127.0.0.1:7000-7099", "tcp://127.0.0.1:7000-7099", false},
		{"tcp://127.0.0.1:7000-7000", "tcp://127.0.0.1:7000", false},
		{"tcp://127.0.1.0/24:7000", "tcp://127.0.1.0/24:7000", true},
		{"tcp://127.0.1.0/24:7000-7999", "tcp://127.0.1.0/24:7000-7999", true},
		{"tcp://[::1]:7000", "tcp://[::1]:7000", false},
		{"tcp://127.0.0.1/32:7000", "tcp://127.0.0.1:7000", false},
		{"tcp://[fd00::/120]:7000", "tcp://[fd00::/120]:7000", true},
	} {
		l, err := ParseListen(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if l.String() != tc.want || l.PerInstance() != tc.perInstance {
			t.Errorf("%s: got %s per-instance %v", tc.in, l, l.PerInstance())
		}
		if back, err := ParseListen(l.String()); err != nil || back != l {
			t.Errorf("%s does not round-trip: %v %v", l, back, err)
		}
	}
	for _, bad := range []string{"7000", "127.0.0.1:7000", "http://127.0.0.1:7000", "udp://127.0.0.1:53",
		"tcp://127.0.0.1", "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000", "tcp://127.0.0.1:7001-7000",
		"tcp://127.0.1.1/24:7000", "tcp://::1:7000", "tcp://[127.0.0.1]:7000", "tcp://0.0.0.0:7000",
		"tcp://127.0.0.0/31:7000", "tcp://[::ffff:127.0.0.1]:7000", "tcp://host:7000"} {
		if l, err := ParseListen(bad); err == nil {
			t.Errorf("%q accepted as %s", bad, l)
		}
	}
}

func TestListenOverlapsRejected(t *testing.T) {
	_, err := Parse("t.toml", []byte(`
[service.a]
command = "/bin/a"
listen = ["tcp://127.0.1.0/24:7000-7010"]

[service.b]
command = "/bin/b"
listen = ["tcp://127.0.1.9:7005"]
`))
	if err == nil || !strings.Contains(err.Error(), "t.toml:8: service.b.listen: tcp://127.0.1.9:7005 overlaps tcp://127.0.1.0/24:7000-7010 of service.a") {
		t.Fatalf("got %v", err)
	}
}
