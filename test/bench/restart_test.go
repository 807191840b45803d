package bench

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkRestartUnderLoad: ten installed as `ten install --runtime` does
// (tenement.service behind tenement.socket, which holds the port), wrk at
// steady load on one running instance, and `systemctl restart
// tenement.service` three times during a run. Each mode runs once without
// restarts (before) and once with them (during); the table gives failed
// requests (wrk's socket errors plus non-2xx answers: the goal is zero) and
// the latency spike as during/before for p99 and max.
//
// Two client modes: keep-alive (wrk's default: a restart closes the
// connections ten holds, so requests in flight on a closing connection are
// what can fail) and Connection: close (a new connection per request: the
// listen backlog held by systemd carries them across the restart).
func BenchmarkRestartUnderLoad(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	need(b, "wrk")
	const conns = 16
	dur := time.Duration(envInt("TEN_BENCH_RESTART_SECONDS", 9)) * time.Second
	restarts := 3

	_, cfg, _ := writeConfig(b, `
[service.web]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
isolation = "process"
start = "eager"

[instances]
web = ["a"]
`)
	port := freePort(b)
	bin := filepath.Join(binDir, "ten-installed")
	out, err := exec.Command(tenBin, "install", "--runtime", "-d", "localhost", "-p", fmt.Sprint(port), "--address", "127.0.0.1", "--binary", bin, "-c", cfg).CombinedOutput()
	if err != nil {
		b.Fatalf("ten install: %v\n%s", err, out)
	}
	b.Cleanup(func() {
		exec.Command(tenBin, "uninstall", "--runtime").Run()
		removeAllUnits()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	inst := "web:a"
	waitAnswer(b, addr, host(inst), 30*time.Second)
	url := "http://" + addr + "/"

	const bench = "5 restart under load"
	for _, mode := range []struct {
		name  string
		extra []string
	}{
		{"keep-alive", nil},
		{"Connection: close", []string{"Connection: close"}},
	} {
		before := wrk(b, url, host(inst), conns, dur, mode.extra...)
		type restart struct {
			took time.Duration
			err  error
		}
		done := make(chan []restart)
		go func() {
			var rs []restart
			// Spread the restarts over the middle of the run.
			gap := dur / time.Duration(restarts+1)
			for i := 0; i < restarts; i++ {
				time.Sleep(gap)
				t0 := time.Now()
				out, err := exec.Command("systemctl", "restart", "tenement.service").CombinedOutput()
				if err != nil {
					err = fmt.Errorf("%v %s", err, out)
				}
				rs = append(rs, restart{time.Since(t0), err})
			}
			done <- rs
		}()
		during := wrk(b, url, host(inst), conns, dur, mode.extra...)
		rs := <-done
		var took []time.Duration
		for _, r := range rs {
			if r.err != nil {
				b.Fatalf("systemctl restart tenement.service: %v", r.err)
			}
			took = append(took, r.took)
		}
		v := fmt.Sprintf("wrk %d conn, %s", conns, mode.name)
		for _, x := range []struct {
			name string
			r    wrkReport
		}{{"before (no restart)", before}, {fmt.Sprintf("during %d restarts", restarts), during}} {
			r := row{bench: bench, variant: v + ": " + x.name, metric: "latency (wrk)", n: fmtNum(float64(x.r.Requests)),
				min: fmtDur(us(x.r.MinUS)), p50: fmtDur(us(x.r.P50US)), p99: fmtDur(us(x.r.P99US)), max: fmtDur(us(x.r.MaxUS)),
				note: fmt.Sprintf("failed %d (%s); req/s %s", x.r.errors(), x.r.errorText(), fmtNum(x.r.rps()))}
			if x.r == during {
				r.ratio = fmt.Sprintf("p99 %s, max %s", ratio(during.P99US, before.P99US, "before"), ratio(during.MaxUS, before.MaxUS, "before"))
				st := summarize(took)
				r.note += fmt.Sprintf("; systemctl restart took %s–%s", fmtDur(st.min), fmtDur(st.max))
			}
			addRow(r)
		}
		b.ReportMetric(float64(during.errors()), fmt.Sprintf("failed-%s", map[bool]string{true: "keepalive", false: "close"}[mode.extra == nil]))
	}
}
