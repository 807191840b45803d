package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// A creation by request that failed tells the client 504 when the app did
// not listen within startup_timeout and 502 otherwise, without the error
// itself (which can name the command's path).
func TestCreateRefused(t *testing.T) {
	inst := units.Instance{Service: "api", ID: "x"}
	for _, c := range []struct {
		err    error
		status int
		has    string
	}{
		{fmt.Errorf("spawn api:x: %w (the app must listen...)", &systemd.JobError{Op: "start", Unit: "tenement-api@x.service", Result: "timeout"}), http.StatusGatewayTimeout, "did not listen within startup_timeout 7s"},
		{fmt.Errorf("spawn api:x: %w", &systemd.JobError{Op: "start", Unit: "tenement-api@x.service", Result: "failed", UnitResult: "timeout"}), http.StatusGatewayTimeout, "did not listen within startup_timeout 7s"},
		{fmt.Errorf("spawn api:x: %w", &systemd.JobError{Op: "start", Unit: "tenement-api@x.service", Result: "failed", UnitResult: "exit-code"}), http.StatusBadGateway, "its app did not start (systemd: exit-code)"},
		{fmt.Errorf("spawn api:x: exec /srv/secret/bin/app: permission denied"), http.StatusBadGateway, "could not be created"},
	} {
		r := createRefused(inst, 7, c.err)
		if strings.Contains(r.Msg, "ten ps") || strings.Contains(r.Msg, "was created") {
			t.Errorf("%v: %q sends the client to an instance that was removed again", c.err, r.Msg)
		}
		if r.Status != c.status || !strings.Contains(r.Msg, c.has) || !strings.Contains(r.Msg, "api:x") || strings.Contains(r.Msg, "/srv/secret") {
			t.Errorf("%v: %d %q; want %d with %q and no path", c.err, r.Status, r.Msg, c.status, c.has)
		}
	}
}
