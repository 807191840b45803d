package system

import (
	"strings"
	"testing"
)

// PORT apps on a private network (network = "none") and behind an IP
// allow-list (ip_allow) answer through the router.
func TestPrivateNetworkApps(t *testing.T) {
	s := startTen(t, `
[service.priv]
command = "ECHO --mode port"
network = "none"

[service.allow]
command = "ECHO --mode port"
ip_allow = ["10.0.0.0/8"]
`)
	for _, inst := range []string{"priv:a", "allow:a"} {
		s.mustTen("spawn", inst)
		host := strings.Replace(inst, ":", ".", 1)
		parts := strings.Split(inst, ":")
		host = parts[1] + "." + parts[0] + ".localhost"
		if body := s.mustGet(host, "/info"); !strings.Contains(body, `"instance":"`+inst+`"`) {
			t.Errorf("%s: %q", inst, body)
		}
	}
}
