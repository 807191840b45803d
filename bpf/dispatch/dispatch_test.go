package dispatch

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestBindingValidate(t *testing.T) {
	p := netip.MustParsePrefix
	ok := Binding{Label: "api:prod", Protocol: "tcp", Prefix: p("127.0.1.0/24"), Port: 7000, PortEnd: 7999}
	if err := ok.validate(); err != nil {
		t.Errorf("%v: %v", ok, err)
	}
	for _, tc := range []struct {
		b    Binding
		want string
	}{
		{Binding{Protocol: "tcp", Prefix: p("127.0.1.0/24"), Port: 1}, "empty label"},
		{Binding{Label: strings.Repeat("x", 64), Protocol: "tcp", Prefix: p("127.0.1.0/24"), Port: 1}, "longer than 63"},
		{Binding{Label: "a", Protocol: "sctp", Prefix: p("127.0.1.0/24"), Port: 1}, `protocol "sctp"`},
		{Binding{Label: "a", Protocol: "tcp", Port: 1}, "invalid prefix"},
		{Binding{Label: "a", Protocol: "tcp", Prefix: p("127.0.1.5/24"), Port: 1}, "host bits set (use 127.0.1.0/24)"},
		{Binding{Label: "a", Protocol: "tcp", Prefix: p("127.0.1.0/24"), Port: 9, PortEnd: 8}, "ends before it starts"},
		{Binding{Label: "a", Protocol: "tcp", Prefix: p("127.0.1.0/24"), PortEnd: 8}, "port 0 means every port"},
	} {
		err := tc.b.validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.b, err, tc.want)
		}
	}
}

func TestMergeBindings(t *testing.T) {
	p := netip.MustParsePrefix
	b := func(label string, prefix string, port uint16) Binding {
		return Binding{Label: label, Protocol: "tcp", Prefix: p(prefix), Port: port}
	}
	got := mergeBindings([]Binding{
		b("a", "127.0.1.0/24", 7001), b("a", "127.0.1.0/24", 7000), b("a", "127.0.1.0/24", 7002),
		b("a", "127.0.1.0/24", 7004), b("a", "127.0.2.0/24", 7003), b("b", "127.0.1.0/24", 7003),
		b("a", "127.0.1.0/24", 0), b("a", "127.0.1.0/24", 1),
	})
	want := []Binding{
		b("a", "127.0.1.0/24", 0),
		{Label: "a", Protocol: "tcp", Prefix: p("127.0.1.0/24"), Port: 1},
		{Label: "a", Protocol: "tcp", Prefix: p("127.0.1.0/24"), Port: 7000, PortEnd: 7002},
		b("a", "127.0.1.0/24", 7004),
		b("a", "127.0.2.0/24", 7003),
		b("b", "127.0.1.0/24", 7003),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mergeBindings =\n%v\nwant\n%v", got, want)
	}
}
