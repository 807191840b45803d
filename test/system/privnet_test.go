package system

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PORT apps on a private network (network = "none": the router dials PORT
// inside the instance's own network namespace) and behind an IP allow-list
// (ip_allow: loopback allowed) answer through the router, run as their
// service's only process (no shim), and sleep and wake as any other.
// Before, a PORT app with ip_allow never started (the unit's IP filter
// dropped the shim's loopback connection to it).
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
		parts := strings.Split(inst, ":")
		host := parts[1] + "." + parts[0] + ".localhost"
		for cycle := 0; cycle < 2; cycle++ {
			if body := s.mustGet(host, "/info"); !strings.Contains(body, `"instance":"`+inst+`"`) {
				t.Fatalf("%s, cycle %d: %q", inst, cycle, body)
			}
			unit := "tenement-" + strings.Replace(inst, ":", "@", 1) + ".service"
			if cmd := show(t, unit, "ExecStart"); strings.Contains(cmd, " shim ") {
				t.Errorf("%s: the app runs behind the shim: %s", inst, cmd)
			}
			onlyApp(t, inst, 10*time.Second)
			s.mustSleep(t, inst)
		}
	}
	// The private one's namespace is its own: the app's PORT is not on the
	// host's loopback.
	s.mustGet("a.priv.localhost", "/info")
	var port string
	for _, kv := range strings.Fields(show(t, "tenement-priv@a.service", "Environment")) {
		if v, ok := strings.CutPrefix(kv, "PORT="); ok {
			port = v
		}
	}
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatalf("PORT of priv:a: %q", port)
	}
	if ns, _ := os.Readlink("/proc/" + strconv.Itoa(mainPID(t, "priv:a")) + "/ns/net"); ns == "" {
		t.Fatal("no network namespace for priv:a")
	} else if own, _ := os.Readlink("/proc/self/ns/net"); ns == own {
		t.Errorf("priv:a shares the host's network namespace %s", ns)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
		c.Close()
		t.Errorf("priv:a's PORT %s answers on the host's loopback", port)
	}
}
