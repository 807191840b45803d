package bench

import (
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkWakeStorm: TEN_BENCH_STORM_WAKE (100) of TEN_BENCH_STORM_N (200;
// the full run is 1,000) sleeping instances at ten's default isolation are
// hit at the same moment while a CPU hog spins on every core, with the
// default startup_timeout (10 s): each request's connect → first byte, the
// failed ones (a 504 or a 503 from the wake queue counts as failed), and the
// time until the last answered. Two ways in the same run: ten's default
// wake queue (settings max_concurrent_wakes, wake_queue), and no bound
// (max_concurrent_wakes = 10000: every wake starts at once, as before the
// queue existed).
func BenchmarkWakeStorm(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	n := envInt("TEN_BENCH_STORM_N", 200)
	wake := min(envInt("TEN_BENCH_STORM_WAKE", 100), n)
	const bench = "9 wake storm"
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%04d", i)
	}
	for _, v := range []struct{ name, settings string }{
		{"ten, default wake queue", ""},
		{"ten, no bound (max_concurrent_wakes = 10000)", "max_concurrent_wakes = 10000\n"},
	} {
		ten := startTen(b, v.settings+`
[service.st]
command = "ECHO"
args = ["--mode", "port"]
start = "lazy"

[instances]
st = ["`+strings.Join(ids, `", "`)+`"]
`, nil...)
		hosts := make([]string, wake)
		for i := range hosts {
			hosts[i] = host("st:" + ids[i*(n/wake)])
		}
		stopHog := cpuHog(b)
		wakeAll(bench, fmt.Sprintf("%s: wake %d of %d at once, CPU hog on every core", v.name, wake, n), hosts, func(i int) (time.Duration, error) {
			return firstByte(ten.addr, hosts[i], 60*time.Second)
		})
		stopHog()
		ten.stop()
		removeAllUnits()
	}
}

// cpuHog runs one busy loop per CPU (plain processes at the default nice
// level) until the returned func is called.
func cpuHog(b *testing.B) func() {
	var cmds []*exec.Cmd
	for i := 0; i < runtime.NumCPU(); i++ {
		c := exec.Command("/bin/sh", "-c", "while :; do :; done")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	stop := func() {
		for _, c := range cmds {
			if c.Process != nil {
				_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				_ = c.Wait()
				c.Process = nil
			}
		}
	}
	b.Cleanup(stop)
	time.Sleep(200 * time.Millisecond) // let the hogs take the CPUs
	return stop
}
