package systemd

import (
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/units"
)

// The cache follows signals (state and timestamps), and a listing replaces
// it: a unit no longer listed is gone, the timestamps of a unit whose state
// did not change stay.
func TestStateCacheSignalsAndListing(t *testing.T) {
	c := newStateCache()
	a := units.Instance{Service: "api", ID: "a"}
	b := units.Instance{Service: "api", ID: "b"}
	since := time.UnixMicro(1_700_000_000_000_000)
	c.apply(a.ServiceUnit(), map[string]dbus.Variant{"LoadState": dbus.MakeVariant("loaded")})
	if _, ok := c.get(a.ServiceUnit()); ok {
		t.Fatal("a signal without a state made an entry")
	}
	c.apply(a.ServiceUnit(), map[string]dbus.Variant{
		"ActiveState": dbus.MakeVariant("active"), "SubState": dbus.MakeVariant("running"),
		"ActiveEnterTimestamp": dbus.MakeVariant(uint64(since.UnixMicro())),
	})
	st, ok := c.get(a.ServiceUnit())
	if !ok || st.ActiveState != "active" || st.SubState != "running" || !st.ActiveSince.Equal(since) {
		t.Fatalf("after the signal: %+v %v", st, ok)
	}
	c.apply(a.ServiceUnit(), map[string]dbus.Variant{"SubState": dbus.MakeVariant("reloading")})
	if st, _ := c.get(a.ServiceUnit()); st.ActiveState != "active" || st.SubState != "reloading" {
		t.Fatalf("a partial signal lost the rest: %+v", st)
	}
	c.set(b.ServiceUnit(), UnitState{ActiveState: "inactive"})
	c.replace([]Unit{{Instance: a, Kind: units.KindService, ActiveState: "active", SubState: "running"},
		{Instance: a, Kind: units.KindSocket, ActiveState: "active", SubState: "running"}})
	if _, ok := c.get(b.ServiceUnit()); ok {
		t.Fatal("a unit the listing no longer has is still cached")
	}
	if st, _ := c.get(a.ServiceUnit()); !st.ActiveSince.Equal(since) || st.SubState != "running" {
		t.Fatalf("after the listing: %+v", st)
	}
	c.replace([]Unit{{Instance: a, Kind: units.KindService, ActiveState: "inactive", SubState: "dead"}})
	if st, _ := c.get(a.ServiceUnit()); !st.ActiveSince.IsZero() || st.ActiveState != "inactive" {
		t.Fatalf("a changed state kept its old timestamps: %+v", st)
	}
}

// TestCacheDiffer: a listing's units whose state the cache has otherwise,
// or not at all, are what Watch delivers when it starts late.
func TestCacheDiffer(t *testing.T) {
	c := newStateCache()
	a := units.Instance{Service: "api", ID: "a"}
	b := units.Instance{Service: "api", ID: "b"}
	c.set(a.SocketUnit(), UnitState{ActiveState: "active", SubState: "listening"})
	c.set(a.ServiceUnit(), UnitState{ActiveState: "inactive", SubState: "dead"})
	got := c.differ([]Unit{
		{Instance: a, Kind: units.KindSocket, ActiveState: "active", SubState: "listening"},
		{Instance: a, Kind: units.KindService, ActiveState: "active", SubState: "running"},
		{Instance: b, Kind: units.KindSocket, ActiveState: "active", SubState: "listening"},
	})
	if len(got) != 2 || got[0].Instance != a || got[0].Kind != units.KindService || got[1].Instance != b {
		t.Fatalf("differ: %+v, want api:a's service and api:b's socket", got)
	}
}
