package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"

	tensd "github.com/tenhq/ten/systemd"
)

// BenchmarkWakeStorm: TEN_BENCH_STORM_WAKE (100) of TEN_BENCH_STORM_N (200;
// the full run is 1,000) sleeping instances at ten's default isolation are
// hit at the same moment while a CPU hog spins on every core, with the
// default startup_timeout (10 s): each request's connect → first byte, the
// failed ones (a 504 or a 503 from the wake queue counts as failed), and the
// time until the last answered. Variants in the same run: ten's default
// wake queue, then each max_concurrent_wakes in TEN_BENCH_STORM_CONC
// (comma-separated; default "10000": no bound, every wake starts at once,
// as before the queue existed). After the first variant, the baseline with
// no ten: the same 100 services started at once over D-Bus (what systemctl
// start sends), each polled on its own PORT until it answers — what
// systemd and the sandbox alone take for the storm.
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
	type variant struct{ name, settings string }
	vs := []variant{{"ten, default wake queue", ""}}
	conc := os.Getenv("TEN_BENCH_STORM_CONC")
	if conc == "" {
		conc = "10000"
	}
	for _, c := range strings.Split(conc, ",") {
		if c = strings.TrimSpace(c); c != "" {
			vs = append(vs, variant{"ten, max_concurrent_wakes = " + c, "max_concurrent_wakes = " + c + "\n"})
		}
	}
	for i, v := range vs {
		ten := startTen(b, v.settings+`
[service.st]
command = "ECHO"
args = ["--mode", "port"]
start = "lazy"

[instances]
st = ["`+strings.Join(ids, `", "`)+`"]
`, nil...)
		hosts := make([]string, wake)
		insts := make([]string, wake)
		for i := range hosts {
			insts[i] = "st:" + ids[i*(n/wake)]
			hosts[i] = host(insts[i])
		}
		stopHog := cpuHog(b)
		wakeAll(bench, fmt.Sprintf("%s: wake %d of %d at once, CPU hog on every core", v.name, wake, n), hosts, func(i int) (time.Duration, error) {
			return firstByte(ten.addr, hosts[i], 60*time.Second)
		})
		stopHog()
		m := ten.metricsPlain("ten_wake_queue_")
		if c := m["ten_wake_queue_wait_seconds_count"]; c > 0 {
			rowsMu.Lock()
			rows[len(rows)-1].note += fmt.Sprintf("; ten_wake_queue_rejected_total %.0f, wait_seconds mean %s over %.0f wakes",
				m["ten_wake_queue_rejected_total"], fmtDur(time.Duration(m["ten_wake_queue_wait_seconds_sum"]/c*float64(time.Second))), c)
			rowsMu.Unlock()
		}
		ten.stop()
		if i == 0 {
			stormSystemd(b, bench, fmt.Sprintf("systemd alone: the same %d services started at once over D-Bus, each polled on its PORT, CPU hog on every core", wake), insts)
		}
		removeAllUnits()
	}
}

// stormSystemd stops the given instances' services, then starts all of them
// at once over D-Bus with no ten and polls each app's own PORT (from the
// service's Environment) until it answers: per service, StartUnit → first
// byte.
func stormSystemd(b *testing.B, bench, variant string, insts []string) {
	ctx := context.Background()
	conn, err := sd.NewSystemConnectionContext(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ports := make([]string, len(insts))
	for i, inst := range insts {
		unit := serviceUnit(inst)
		ch := make(chan string, 1)
		if _, err := conn.StopUnitContext(ctx, unit, "replace", ch); err == nil {
			<-ch
		}
		_ = conn.ResetFailedUnitContext(ctx, unit)
		p, err := conn.GetServicePropertyContext(ctx, unit, "Environment")
		if err != nil {
			b.Fatalf("%s: Environment: %v", unit, err)
		}
		env, _ := p.Value.Value().([]string)
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "PORT="); ok {
				ports[i] = v
			}
		}
		if ports[i] == "" {
			b.Fatalf("%s: no PORT in its Environment %q", unit, env)
		}
	}
	stopHog := cpuHog(b)
	defer stopHog()
	hosts := make([]string, len(insts))
	for i := range insts {
		hosts[i] = host(insts[i])
	}
	wakeAll(bench, variant, hosts, func(i int) (time.Duration, error) {
		t0 := time.Now()
		ch := make(chan string, 1)
		_, err := conn.StartUnitContext(ctx, serviceUnit(insts[i]), "replace", ch)
		if err != nil {
			return 0, err
		}
		// The unit is Type=notify: ten sends READY=1 once the app listens.
		// With no ten, the loop below does: it polls the app and then
		// says READY=1 for it, and the start job ends (or failed first).
		addr := net.JoinHostPort("127.0.0.1", ports[i])
		for time.Since(t0) < 60*time.Second {
			select {
			case res := <-ch:
				if res != "done" {
					return 0, fmt.Errorf("start %s: job %s", serviceUnit(insts[i]), res)
				}
				ch = nil
			default:
			}
			if _, err := firstByte(addr, hosts[i], 5*time.Second); err == nil {
				d := time.Since(t0)
				if ch != nil {
					if p, err := conn.GetServicePropertyContext(ctx, serviceUnit(insts[i]), "MainPID"); err == nil {
						pid, _ := p.Value.Value().(uint32)
						_ = tensd.NotifyReady(int(pid))
					}
				}
				return d, nil
			}
			time.Sleep(5 * time.Millisecond)
		}
		return 0, fmt.Errorf("%s: no answer on %s within 60s", insts[i], addr)
	})
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
