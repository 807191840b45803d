package l4

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/units"
)

func mustParse(t *testing.T, s ...string) []config.Listen {
	t.Helper()
	ls, err := ParseAll(s...)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func TestAssignPerInstance(t *testing.T) {
	spec := mustParse(t, "tcp://127.0.1.0/24:7000-7099")
	held := map[units.Instance][]config.Listen{}
	seen := map[netip.Addr]units.Instance{}
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		inst := units.Instance{Service: "db", ID: id}
		got, err := Assign(inst, spec, held)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got[0].Prefix.IsSingleIP() || got[0].Port != 7000 || got[0].PortEnd != 7099 {
			t.Fatalf("%s: %v", inst, got)
		}
		a := got[0].Prefix.Addr()
		if !spec[0].Prefix.Contains(a) || a == netip.MustParseAddr("127.0.1.0") || a == netip.MustParseAddr("127.0.1.255") {
			t.Errorf("%s got %s", inst, a)
		}
		if other, dup := seen[a]; dup {
			t.Errorf("%s and %s both got %s", inst, other, a)
		}
		seen[a] = inst
		held[inst] = got
		// Stable: the same instance gets the same address again.
		again, _ := Assign(inst, spec, held)
		if again[0] != got[0] {
			t.Errorf("%s: %s then %s", inst, got[0], again[0])
		}
	}
}

func TestAssignFullPrefix(t *testing.T) {
	spec := mustParse(t, "tcp://127.0.1.0/30:7000") // two hosts
	held := map[units.Instance][]config.Listen{}
	for _, id := range []string{"a", "b"} {
		inst := units.Instance{Service: "db", ID: id}
		got, err := Assign(inst, spec, held)
		if err != nil {
			t.Fatal(err)
		}
		held[inst] = got
	}
	if _, err := Assign(units.Instance{Service: "db", ID: "c"}, spec, held); err == nil || !strings.Contains(err.Error(), "every address is held") {
		t.Errorf("third instance in a /30: %v", err)
	}
}

func TestAssignSingleAddressOneHolder(t *testing.T) {
	spec := mustParse(t, "tcp://127.0.0.1:7000")
	a := units.Instance{Service: "db", ID: "a"}
	got, err := Assign(a, spec, nil)
	if err != nil || len(got) != 1 || got[0] != spec[0] {
		t.Fatalf("%v %v", got, err)
	}
	_, err = Assign(units.Instance{Service: "db", ID: "b"}, spec, map[units.Instance][]config.Listen{a: got})
	if err == nil || !strings.Contains(err.Error(), "db:a holds tcp://127.0.0.1:7000") {
		t.Errorf("second holder: %v", err)
	}
	// Its own claim does not block an instance (adoption, re-spawn).
	if _, err := Assign(a, spec, map[units.Instance][]config.Listen{a: got}); err != nil {
		t.Error(err)
	}
}

func TestAssignIPv6(t *testing.T) {
	got, err := Assign(units.Instance{Service: "db", ID: "a"}, mustParse(t, "tcp://[fd00::/64]:7000"), nil)
	if err != nil || !got[0].Prefix.Addr().Is6() || !got[0].Prefix.IsSingleIP() {
		t.Fatalf("%v %v", got, err)
	}
	if s := InternalSockets(got, 20001); len(s) != 1 || s[0] != "[::1]:20001" {
		t.Errorf("internal sockets %v", s)
	}
}

func TestInternalSockets(t *testing.T) {
	ls := mustParse(t, "tcp://127.0.0.1:7000", "tcp://[::1]:7000")
	if s := strings.Join(InternalSockets(ls, 20001), " "); s != "127.0.0.1:20001 [::1]:20001" {
		t.Errorf("got %s", s)
	}
}

func TestLabel(t *testing.T) {
	if l := Label(units.Instance{Service: "api", ID: "prod"}); l != "api:prod" {
		t.Errorf("label %q", l)
	}
	long := units.Instance{Service: strings.Repeat("s", 63), ID: strings.Repeat("i", 63)}
	long2 := units.Instance{Service: strings.Repeat("s", 63), ID: strings.Repeat("i", 62) + "j"}
	if l := Label(long); len(l) > 63 || l == Label(long2) {
		t.Errorf("long labels %q %q", l, Label(long2))
	}
}
