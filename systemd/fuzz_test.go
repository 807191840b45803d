package systemd

import (
	"fmt"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/systemd/wire"
)

// FuzzUnitFromPath checks that the unit name read from a signal's object
// path is the name systemd escaped into it, for any name.
func FuzzUnitFromPath(f *testing.F) {
	for _, s := range []string{"tenement-api@prod.service", "tenement-my\\x2dapi-prod.slice", "_", "", "a_b", "é.service"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if name == "" {
			return // systemd has no unit without a name
		}
		p := dbus.ObjectPath(unitPathPrefix + "/" + busLabelEscape(name))
		if got := wire.UnitFromPath(string(p)); got != name {
			t.Fatalf("unitFromPath(%q) = %q, want %q", p, got, name)
		}
	})
}

func TestPropertiesUpdate(t *testing.T) {
	changed := map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("active")}
	s := &dbus.Signal{Name: "org.freedesktop.DBus.Properties.PropertiesChanged", Path: unitPathPrefix + "/tenement_2dapi_40prod_2eservice",
		Body: []any{"org.freedesktop.systemd1.Unit", changed, []string{}}}
	u, ok := propertiesUpdate(s)
	if !ok || u.UnitName != "tenement-api@prod.service" || u.Changed["ActiveState"].Value() != "active" {
		t.Fatalf("propertiesUpdate = %+v, %v", u, ok)
	}
	s.Body[0] = "org.freedesktop.systemd1.Service"
	if _, ok := propertiesUpdate(s); ok {
		t.Error("a Service-interface change was taken for a Unit one")
	}
}

// busLabelEscape is systemd's bus_label_escape: letters and digits (but a
// leading digit) stay, every other byte becomes _xx. (go-systemd's
// PathBusEscape writes bytes below 0x10 with one hex digit.)
func busLabelEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return b.String()
}
