package dispatch

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/tenhq/ten/bpf/internal/bpftest"
)

// TestDispatchRollback fills a small bindings trie so that a multi-port
// AddBinding fails half way, and checks what the failed add leaves behind:
// exactly the bindings there were before. The keys the label owned before
// the add stay (a rollback that deleted every key it had put would unbind
// them), another label's keys stay, the keys the add put are gone, and a
// label whose add failed leaves no destination.
func TestDispatchRollback(t *testing.T) {
	ns := bpftest.NewNetNS(t)
	ns.Enter(t)
	d, err := loadDispatcher(ns.Path(), "", bpftest.Logger(t), 4)
	if err != nil {
		t.Fatalf("load dispatcher: %v", err)
	}
	t.Cleanup(func() { d.Close() })

	api := bpftest.ListenTCP(t, "127.0.0.1:0")
	db := bpftest.ListenTCP(t, "127.0.0.1:0")
	mustAdd(t, d, Binding{Label: "api:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.5.1/32"), Port: 7000})
	// Another label on a shorter prefix under a port the failed add puts.
	mustAdd(t, d, Binding{Label: "db:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.5.0/24"), Port: 7001})
	mustRegister(t, d, "api:prod", api)
	mustRegister(t, d, "db:prod", db)
	before, err := d.Bindings()
	if err != nil {
		t.Fatal(err)
	}
	destsBefore := destinationLabels(t, d)

	// Two of four entries are used: 7000 is put again (the label's own),
	// 7001 and 7002 fill the trie, 7003 fails.
	grow := Binding{Label: "api:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.5.1/32"), Port: 7000, PortEnd: 7003}
	if err := d.AddBinding(grow); err == nil {
		t.Fatalf("AddBinding(%s) on a full trie succeeded", grow)
	}
	after, err := d.Bindings()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("after a failed AddBinding(%s), Bindings() =\n%v\nwant what was there before\n%v", grow, after, before)
	}
	bpftest.LandsOn(t, "127.0.5.1:7000", api) // the label's own key survived the rollback
	bpftest.LandsOn(t, "127.0.5.1:7001", db)  // so did the other label's
	bpftest.Refused(t, "127.0.5.1:7002")      // the key the add put is gone

	// A label of its own whose add fails leaves neither keys nor a destination.
	fresh := Binding{Label: "web:new", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.6.0/24"), Port: 1, PortEnd: 5}
	if err := d.AddBinding(fresh); err == nil {
		t.Fatalf("AddBinding(%s) on a full trie succeeded", fresh)
	}
	if after, err := d.Bindings(); err != nil || !reflect.DeepEqual(after, before) {
		t.Fatalf("after a failed AddBinding(%s), Bindings() =\n%v (%v)\nwant\n%v", fresh, after, err, before)
	}
	if got := destinationLabels(t, d); !reflect.DeepEqual(got, destsBefore) {
		t.Errorf("destinations after failed adds = %v, want %v", got, destsBefore)
	}

	// The rollback gave the entries back: two more ports fit.
	mustAdd(t, d, Binding{Label: "api:prod", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.5.1/32"), Port: 7002, PortEnd: 7003})
	bpftest.LandsOn(t, "127.0.5.1:7003", api)
}

// destinationLabels lists the dispatcher's destinations as "label network".
func destinationLabels(tb testing.TB, d *Dispatcher) map[string]bool {
	tb.Helper()
	dests, err := d.Destinations()
	if err != nil {
		tb.Fatal(err)
	}
	m := map[string]bool{}
	for _, dst := range dests {
		m[dst.Label+" "+dst.Network] = true
	}
	return m
}
