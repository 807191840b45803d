package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkStandbyWake: cold wake (connect → first byte) of the Go app of
// BenchmarkColdWake, socket-activated and PORT, with settings.standby on,
// interleaved round by round in a shuffled order beside systemd's socket
// activation alone (the same app under a plain socket unit, the client on
// its unix socket):
//
//	stopped   a sleeping instance whose service is stopped (out of the
//	          standby pool, or settings.standby = 0): systemd starts the
//	          service, with its sandbox, at the wake
//	standby   a sleeping instance on standby: the idle reaper put it to
//	          sleep and ten restarted its service at once, so its waiter
//	          waits in the sandbox and becomes the app at the wake
//
// each with isolation = "process" and "namespace" (the default). Ratios are
// to systemd socket activation alone, p50, same run.
func BenchmarkStandbyWake(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	rounds := envInt("TEN_BENCH_COLD_N", 30)
	apps := coldApps[:2] // Go: socket activation, PORT
	var cfg strings.Builder
	cfg.WriteString("standby = 8\n\n")
	for _, a := range apps {
		for _, iso := range []string{"process", "namespace"} {
			fmt.Fprintf(&cfg, "[service.%s%s]\n%sisolation = %q\n\n", a.svc, iso[:2], a.toml, iso)
			fmt.Fprintf(&cfg, "[service.%s%ssb]\n%sisolation = %q\nidle_timeout = 1\n\n", a.svc, iso[:2], a.toml, iso)
		}
	}
	cfg.WriteString("[instances]\n")
	for _, a := range apps {
		for _, iso := range []string{"pr", "na"} {
			fmt.Fprintf(&cfg, "%s%s = [\"a\"]\n%s%ssb = [\"a\"]\n", a.svc, iso, a.svc, iso)
		}
	}
	ten := startTen(b, cfg.String())

	type variant struct {
		app  int
		name string
		prep func()
		get  func() (time.Duration, error)
	}
	var vs []variant
	for i, a := range apps {
		for _, iso := range []string{"pr", "na"} {
			stopped, sb := a.svc+iso+":a", a.svc+iso+"sb:a"
			vs = append(vs, variant{app: i, name: "stopped " + iso,
				prep: func() { ten.sleep(stopped) },
				get:  func() (time.Duration, error) { return firstByte(ten.addr, host(stopped), 30*time.Second) }})
			vs = append(vs, variant{app: i, name: "standby " + iso,
				prep: func() { ten.standby(sb) },
				get:  func() (time.Duration, error) { return firstByte(ten.addr, host(sb), 30*time.Second) }})
		}
		if a.socketActivated {
			sd := newSocketOnly(b, a)
			vs = append(vs, variant{app: i, name: "systemd", prep: sd.sleep,
				get: func() (time.Duration, error) { return firstByteNet("unix", sd.addr, "localhost", 30*time.Second) }})
		}
	}
	// The first wake of a standby instance is from stopped: wake each once.
	for _, v := range vs {
		if strings.HasPrefix(v.name, "standby") {
			if _, err := v.get(); err != nil {
				b.Fatal(err)
			}
		}
	}
	samples := make([][]time.Duration, len(vs))
	rng := rand.New(rand.NewPCG(7, 7))
	for r := 0; r <= rounds; r++ { // round 0 warms the page cache
		for _, i := range rng.Perm(len(vs)) {
			v := vs[i]
			v.prep()
			d, err := v.get()
			if err != nil {
				b.Fatalf("standby wake %s %s (round %d): %v", apps[v.app].label, v.name, r, err)
			}
			if r > 0 {
				samples[i] = append(samples[i], d)
			}
		}
	}
	const bench = "1s standby wake"
	var sdStat stats
	for i, v := range vs {
		if v.name == "systemd" {
			sdStat = summarize(samples[i])
		}
	}
	iso := map[string]string{"pr": "isolation=process", "na": "isolation=namespace, default"}
	for i, v := range vs {
		st := summarize(samples[i])
		name := "systemd socket activation alone (client on the unix socket, no proxy)"
		if v.name != "systemd" {
			kind, is, _ := strings.Cut(v.name, " ")
			name = fmt.Sprintf("ten (%s), %s", iso[is], kind)
		}
		r := durRow(bench, apps[v.app].label+": "+name, "connect → first byte", st)
		if v.name != "systemd" {
			r.ratio = ratio(float64(st.p50), float64(sdStat.p50), "systemd alone")
		}
		addRow(r)
		b.ReportMetric(float64(st.p50)/1e6, apps[v.app].svc+"-"+strings.ReplaceAll(v.name, " ", "-")+"-p50-ms")
	}
}

// standby waits until inst is asleep on standby: ten says it sleeps and its
// service's main process is ten's waiter (the idle reaper put it to sleep
// at its idle_timeout and ten restarted its service).
func (s *tenServer) standby(inst string) {
	s.tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.state(inst) == "sleeping" {
			out, _ := exec.Command("systemctl", "show", "-P", "MainPID", serviceUnit(inst)).Output()
			pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			if pid > 0 && strings.TrimSpace(string(comm)) == "ten-shim" {
				return
			}
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("%s: not on standby 30s after its wake (%s)", inst, s.state(inst))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
