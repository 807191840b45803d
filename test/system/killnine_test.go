package system

import (
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// killNineConfig: the tenement suite's Python app (PORT, behind the
// router's pool of kept-alive connections), under the default isolation
// and under process; restarts allowed often enough for the loop.
const killNineConfig = `[settings]
data_dir = "./data"
listen = "LISTEN"
max_restarts = 100
backoff_base_ms = 100

[service.api]
command = "./run.sh {data_dir}/{name}/{id}"
startup_timeout = 30 # Python on a loaded test machine

[service.proc]
command = "./run.sh {data_dir}/{name}/{id}"
startup_timeout = 30
isolation = "process"

[instances]
api = ["k"]
proc = ["k"]
`

var helloPid = regexp.MustCompile(`^hello from \S+ pid (\d+)$`)

// The first request after a kill -9 of the app is answered by the app
// systemd restarts, never a 502, however soon it comes: here at once, from
// the process that sent the signal, again and again. The request races the
// app's death: it may find the kept-alive connection closed, reset, or read
// by a thread of the dying app before the signal takes it (then the
// connection ends in order with no answer, and the router sends the GET
// again on a new connection). A CPU hog on every core makes the last case
// common: the dying app waits for a CPU while the request arrives.
func TestKillNineFirstRequestRepeated(t *testing.T) {
	install(t)
	dir, addr := tenementSetup(t, killNineConfig)
	s := startServeIn(t, dir, addr)
	for i := 0; i < runtime.NumCPU(); i++ {
		hog := exec.Command("/bin/sh", "-c", "while :; do :; done")
		if err := hog.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hog.Process.Kill(); hog.Wait() })
	}
	for _, svc := range []string{"api", "proc"} {
		host := "k." + svc + ".localhost"
		s.waitGet(host, "/", 60*time.Second)
		for i := 0; i < 12; i++ {
			// A request just before leaves a kept-alive connection to the
			// app in the pool.
			pid, err := strconv.Atoi(s.mustGet(host, "/pid"))
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			code, body, err := s.get(host, "/")
			m := helloPid.FindStringSubmatch(body)
			if err != nil || code != 200 || m == nil {
				t.Fatalf("%s, kill -9 #%d: first request: %d %v %q", svc, i+1, code, err, body)
			}
			if m[1] == strconv.Itoa(pid) {
				t.Fatalf("%s, kill -9 #%d: answered by the killed app (pid %d)", svc, i+1, pid)
			}
		}
		if out := s.mustTn("health", svc+":k"); !regexp.MustCompile(`(?i)crash`).MatchString(out) {
			t.Errorf("%s: ten health does not count the crashes:\n%s", svc, out)
		}
	}
}
