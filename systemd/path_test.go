package systemd

import (
	"testing"

	"github.com/godbus/dbus/v5"
)

// A unit's object path turns back into its name; a signal of another
// interface or of a unit not ten's is no update.
func TestPropertiesUpdateFromSignal(t *testing.T) {
	path := dbus.ObjectPath("/org/freedesktop/systemd1/unit/tenement_2dmy_5fapi_40prod_2d2_2eservice")
	if got := unitNameFromPath(path); got != "tenement-my_api@prod-2.service" {
		t.Fatalf("unitNameFromPath = %q", got)
	}
	changed := map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("active")}
	u := propertiesUpdate(&dbus.Signal{Path: path, Body: []any{"org.freedesktop.systemd1.Unit", changed, []string{}}})
	if u == nil || u.UnitName != "tenement-my_api@prod-2.service" || u.Changed["ActiveState"].Value() != "active" {
		t.Fatalf("update %+v", u)
	}
	if u := propertiesUpdate(&dbus.Signal{Path: path, Body: []any{"org.freedesktop.systemd1.Service", changed, []string{}}}); u != nil {
		t.Fatalf("a Service-interface signal gave %+v", u)
	}
	other := dbus.ObjectPath("/org/freedesktop/systemd1/unit/dbus_2eservice")
	if u := propertiesUpdate(&dbus.Signal{Path: other, Body: []any{"org.freedesktop.systemd1.Unit", changed, []string{}}}); u != nil {
		t.Fatalf("dbus.service gave %+v", u)
	}
}
