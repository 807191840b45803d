package systemd

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/units"
)

func update(unit, active string) *sd.PropertiesUpdate {
	return &sd.PropertiesUpdate{UnitName: unit, Changed: map[string]dbus.Variant{"ActiveState": dbus.MakeVariant(active)}}
}

// A change that does not fit into the buffer is not lost in silence: it is
// counted, and once the consumer reads again the present state of every
// unit arrives from a listing. (Before, the change was dropped and an
// instance could stay marked asleep for good.)
func TestPumpResyncsAfterOverflow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	raw := make(chan *sd.PropertiesUpdate, 4)
	errs := make(chan error, 1)
	out := make(chan Change, 1)
	a := units.Instance{Service: "api", ID: "a"}
	b := units.Instance{Service: "api", ID: "b"}
	listed := make(chan struct{}, 8)
	list := func(context.Context) ([]Unit, error) {
		listed <- struct{}{}
		return []Unit{{Instance: b, Kind: units.KindService, ActiveState: "active", SubState: "running"}}, nil
	}
	var dropped atomic.Uint64
	go pump(ctx, raw, errs, out, list, newStateCache(), &dropped, slog.New(slog.NewTextHandler(io.Discard, nil)))
	raw <- update(a.ServiceUnit(), "active")
	raw <- update(b.ServiceUnit(), "active") // out is full: lost
	deadline := time.After(10 * time.Second)
	for dropped.Load() == 0 {
		select {
		case <-deadline:
			t.Fatal("the overflow was not counted")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if c := <-out; c.Instance != a || c.ActiveState != "active" {
		t.Fatalf("first change %+v", c)
	}
	select {
	case c := <-out:
		if c.Instance != b || c.ActiveState != "active" || c.Kind != units.KindService {
			t.Fatalf("after the overflow got %+v, want %s active", c, b)
		}
	case <-deadline:
		t.Fatal("no resynchronisation after the overflow: the change of " + b.String() + " is lost")
	}
	if len(listed) != 1 {
		t.Fatalf("listed %d times, want 1", len(listed))
	}
}

// go-systemd's own overflow (reported on the error channel) is handled the
// same way.
func TestPumpResyncsAfterUpstreamOverflow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	raw := make(chan *sd.PropertiesUpdate)
	errs := make(chan error, 1)
	out := make(chan Change, 4)
	b := units.Instance{Service: "api", ID: "b"}
	list := func(context.Context) ([]Unit, error) {
		return []Unit{{Instance: b, Kind: units.KindService, ActiveState: "inactive", SubState: "dead"}}, nil
	}
	var dropped atomic.Uint64
	go pump(ctx, raw, errs, out, list, newStateCache(), &dropped, slog.New(slog.NewTextHandler(io.Discard, nil)))
	errs <- errUpdateFull{}
	select {
	case c := <-out:
		if c.Instance != b || c.ActiveState != "inactive" {
			t.Fatalf("got %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no resynchronisation after go-systemd's overflow")
	}
	if dropped.Load() != 1 {
		t.Fatalf("dropped = %d, want 1", dropped.Load())
	}
}

type errUpdateFull struct{}

func (errUpdateFull) Error() string { return "update channel is full" }

// TestSignalFilter: the connection's handler keeps only the Unit
// interface's PropertiesChanged of unit objects, and a full channel is a
// reported loss, never a blocked reader.
func TestSignalFilter(t *testing.T) {
	raw := make(chan *sd.PropertiesUpdate, 1)
	errs := make(chan error, 1)
	h := signalFilter{raw: raw, errs: errs}
	sig := func(iface string) *dbus.Signal {
		return &dbus.Signal{Name: "org.freedesktop.DBus.Properties.PropertiesChanged", Path: unitPathPrefix + "/tenement_2dapi_40a_2eservice",
			Body: []any{iface, map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("active")}, []string{}}}
	}
	h.DeliverSignal("", "", sig("org.freedesktop.systemd1.Service"))
	h.DeliverSignal("", "", &dbus.Signal{Name: "org.freedesktop.systemd1.Manager.JobRemoved", Path: "/org/freedesktop/systemd1"})
	if len(raw) != 0 {
		t.Fatalf("kept a signal of another interface: %+v", <-raw)
	}
	h.DeliverSignal("", "", sig("org.freedesktop.systemd1.Unit"))
	if u := <-raw; u.UnitName != "tenement-api@a.service" {
		t.Fatalf("unit %q", u.UnitName)
	}
	h.DeliverSignal("", "", sig("org.freedesktop.systemd1.Unit"))
	h.DeliverSignal("", "", sig("org.freedesktop.systemd1.Unit")) // raw is full
	if len(errs) != 1 {
		t.Fatal("a dropped update was not reported")
	}
}

// systemd sends a unit's state again with every change of any Unit
// property (a job queued, a timestamp); the pump sends each state on once,
// so that what acts on a state (an OOM watch on "active", which reads the
// unit over D-Bus) acts once per start, not once per signal.
func TestPumpSendsEachStateOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	raw := make(chan *sd.PropertiesUpdate, 16)
	out := make(chan Change, 16)
	a := units.Instance{Service: "api", ID: "a"}
	list := func(context.Context) ([]Unit, error) { return nil, nil }
	var dropped atomic.Uint64
	go pump(ctx, raw, make(chan error), out, list, newStateCache(), &dropped, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, st := range []string{"activating", "active", "active", "active", "deactivating", "inactive", "active", "active"} {
		raw <- update(a.ServiceUnit(), st)
	}
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < 5 {
		select {
		case c := <-out:
			got = append(got, c.ActiveState)
		case <-deadline:
			t.Fatalf("got %v, want 5 changes", got)
		}
	}
	select {
	case c := <-out:
		t.Fatalf("a repeat sent on: %v then %s", got, c.ActiveState)
	case <-time.After(100 * time.Millisecond):
	}
	if want := []string{"activating", "active", "deactivating", "inactive", "active"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
