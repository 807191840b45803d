package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// coldApp is one app of the cold-wake benchmark, run four ways.
type coldApp struct {
	label string
	// svc is the ten service name; svc+"ns" is the same with the default
	// isolation (namespace).
	svc string
	// toml is the [service] body without isolation.
	toml string
	// direct is the argv of the baseline, which binds 127.0.0.1:PORT.
	direct func(port int) []string
	// proxyApp is the ExecStart of the app behind systemd-socket-proxyd;
	// socketActivated says it takes its socket from systemd.
	proxyApp        func(port int) string
	socketActivated bool
}

var coldApps = []coldApp{
	{
		label: "Go, socket activation", svc: "goact",
		toml:            "command = \"ECHO\"\nargs = [\"--mode\", \"activation\"]\nactivation = \"socket\"\nstart = \"lazy\"\n",
		direct:          func(p int) []string { return []string{echoBin, "--mode", "port"} },
		proxyApp:        func(int) string { return echoBin + " --mode activation" },
		socketActivated: true,
	},
	{
		label: "Go, PORT behind ten's shim", svc: "goshim",
		toml:     "command = \"ECHO\"\nargs = [\"--mode\", \"port\"]\nstart = \"lazy\"\n",
		direct:   func(p int) []string { return []string{echoBin, "--mode", "port"} },
		proxyApp: func(int) string { return echoBin + " --mode port" },
	},
	{
		label: "Python http.server", svc: "py",
		toml: "command = \"/usr/bin/python3\"\nargs = [\"-m\", \"http.server\", \"{port}\", \"--bind\", \"127.0.0.1\", \"--directory\", \"WWW\"]\nstart = \"lazy\"\n",
		direct: func(p int) []string {
			return []string{"/usr/bin/python3", "-m", "http.server", strconv.Itoa(p), "--bind", "127.0.0.1", "--directory", wwwDir}
		},
		proxyApp: func(p int) string {
			return fmt.Sprintf("/usr/bin/python3 -m http.server %d --bind 127.0.0.1 --directory %s", p, wwwDir)
		},
	},
}

// tenementCold are tenement's published cold-start medians (its README:
// MacBook, debug build).
var tenementCold = map[string]string{"goact": "140 ms (Go)", "goshim": "140 ms (Go)", "py": "65 ms (Python)"}

// BenchmarkColdWake: time from connect to the first byte of the answer for
// a sleeping instance, per app, four ways, interleaved round by round in a
// shuffled order:
//
//	baseline  the app started directly (no systemd, no ten) and polled
//	          every 250µs until it answers: what the app itself costs
//	ten       through ten's router to a sleeping instance, isolation =
//	          "process" (no sandbox, like the baseline)
//	ten, ns   the same with ten's default isolation (namespace sandbox)
//	proxyd    systemd-socket-proxyd on a socket-activated TCP port in front
//	          of the same app (the app socket-activated too when it can;
//	          otherwise a plain service with a readiness loop in
//	          ExecStartPost, as one has to write for proxyd)
//
// "added" is per round: the variant's sample minus the baseline's sample of
// the same round, so that load that hits both cancels out.
func BenchmarkColdWake(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	need(b, "/usr/bin/python3", "/lib/systemd/systemd-socket-proxyd")
	rounds := envInt("TEN_BENCH_COLD_N", 30)

	var cfg strings.Builder
	for _, a := range coldApps {
		fmt.Fprintf(&cfg, "[service.%s]\n%sisolation = \"process\"\n\n[service.%sns]\n%s\n", a.svc, a.toml, a.svc, a.toml)
	}
	cfg.WriteString("[instances]\n")
	for _, a := range coldApps {
		fmt.Fprintf(&cfg, "%s = [\"a\"]\n%sns = [\"a\"]\n", a.svc, a.svc)
	}
	var tenEnv []string
	pprofAddr := ""
	if os.Getenv("TEN_BENCH_PPROF") != "" {
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", freePort(b))
		tenEnv = append(tenEnv, "TEN_PPROF_LISTEN="+pprofAddr)
	}
	ten := startTen(b, cfg.String(), tenEnv...)

	type variant struct {
		app    int
		name   string
		sample func() (time.Duration, error)
		prep   func()
		// unit is the service whose CPU per wake is measured (cpuWake);
		// tenCPU adds ten's own.
		unit   string
		tenCPU bool
	}
	var vs []variant
	for i, a := range coldApps {
		a := a
		vs = append(vs, variant{app: i, name: "baseline", sample: func() (time.Duration, error) { return directCold(b, a) }})
		for _, svc := range []string{a.svc, a.svc + "ns"} {
			inst := svc + ":a"
			vs = append(vs, variant{app: i, name: svc, unit: serviceUnit(inst), tenCPU: true,
				prep:   func() { ten.sleep(inst) },
				sample: func() (time.Duration, error) { return firstByte(ten.addr, host(inst), 30*time.Second) },
			})
		}
		if a.socketActivated {
			sd := newSocketOnly(b, a)
			vs = append(vs, variant{app: i, name: "systemd", prep: sd.sleep, unit: sd.units[0],
				sample: func() (time.Duration, error) { return firstByteNet("unix", sd.addr, "localhost", 30*time.Second) }})
		}
		px := newProxyd(b, a)
		vs = append(vs, variant{app: i, name: "proxyd", prep: px.sleep,
			sample: func() (time.Duration, error) { return firstByte(px.addr, "localhost", 30*time.Second) }})
	}

	samples := make([][]time.Duration, len(vs))
	cpus := make([][]time.Duration, len(vs))
	tenCPU := make([][]time.Duration, len(vs))
	rng := rand.New(rand.NewPCG(6, 6))
	// Round 0 warms the page cache and is not counted.
	for r := 0; r <= rounds; r++ {
		order := rng.Perm(len(vs))
		for _, i := range order {
			v := vs[i]
			if v.prep != nil {
				v.prep()
			}
			var c0, t0 time.Duration
			if v.unit != "" {
				c0 = schedRun(1)
				if v.tenCPU {
					t0 = procSched(ten.pid())
				}
			}
			d, err := v.sample()
			if err != nil {
				b.Fatalf("cold wake %s %s (round %d): %v", coldApps[v.app].label, v.name, r, err)
			}
			if r > 0 {
				samples[i] = append(samples[i], d)
				if v.unit != "" {
					c := schedRun(1) - c0 + unitSched(v.unit)
					if v.tenCPU {
						t := procSched(ten.pid()) - t0
						c += t
						tenCPU[i] = append(tenCPU[i], t)
					}
					cpus[i] = append(cpus[i], c)
				}
			}
		}
	}

	if pprofAddr != "" {
		// A profile of ten over back-to-back sleeps and wakes of the first
		// app's process instance.
		inst := coldApps[0].svc + ":a"
		cpuProfile(b, pprofAddr, os.Getenv("TEN_BENCH_PPROF")+".coldwake", func(d time.Duration) wrkReport {
			n := 0
			for end := time.Now().Add(d); time.Now().Before(end); n++ {
				ten.sleep(inst)
				if _, err := firstByte(ten.addr, host(inst), 30*time.Second); err != nil {
					b.Fatalf("cold wake for the profile: %v", err)
				}
			}
			return wrkReport{Requests: int64(n), DurationUS: d.Microseconds()}
		})
	}

	const bench = "1 cold wake"
	// cpuOf is the CPU samples of app (a)'s variant name.
	cpuOf := func(name string) []time.Duration {
		for i, v := range vs {
			if v.app == 0 && v.name == name {
				return cpus[i]
			}
		}
		return nil
	}
	for ai, a := range coldApps {
		var base []time.Duration
		for i, v := range vs {
			if v.app == ai && v.name == "baseline" {
				base = samples[i]
			}
		}
		bst := summarize(base)
		for i, v := range vs {
			if v.app != ai {
				continue
			}
			st := summarize(samples[i])
			var name, note string
			switch v.name {
			case "baseline":
				name = "baseline: app started directly, polled"
			case a.svc:
				name = "ten (isolation=process)"
			case a.svc + "ns":
				name = "ten (isolation=namespace, default)"
			case "systemd":
				name = "systemd socket activation alone (client on the unix socket, no proxy)"
			case "proxyd":
				name = "systemd-socket-proxyd"
				if !a.socketActivated {
					name += " + readiness loop"
				}
			}
			r := durRow(bench, a.label+": "+name, "connect → first byte", st)
			if v.name != "baseline" {
				added := make([]time.Duration, len(base))
				for k := range base {
					added[k] = samples[i][k] - base[k]
				}
				ad := summarize(added)
				r.ratio = ratio(float64(st.p50), float64(bst.p50), "baseline")
				note = fmt.Sprintf("added over baseline (paired by round): p50 %s, p99 %s", fmtDur(ad.p50), fmtDur(ad.p99))
				if v.name == a.svc+"ns" {
					note += "; tenement's published median " + tenementCold[a.svc]
				}
			}
			r.note = note
			addRow(r)
			if len(cpus[i]) > 0 {
				ct := summarize(cpus[i])
				cr := durRow(bench, a.label+": "+name, "CPU per wake (systemd + the unit's processes + ten)", ct)
				if sdc := cpuOf("systemd"); len(sdc) > 0 && v.name != "systemd" {
					sst := summarize(sdc)
					cr.ratio = ratio(float64(ct.p50), float64(sst.p50), "systemd alone")
					cr.note = fmt.Sprintf("added over systemd socket activation alone (Go, socket activation): p50 %s", fmtDur(ct.p50-sst.p50))
				}
				if len(tenCPU[i]) > 0 {
					cr.note += fmt.Sprintf("; of it ten serve itself p50 %s", fmtDur(summarize(tenCPU[i]).p50))
				}
				addRow(cr)
			}
			b.ReportMetric(float64(st.p50)/1e6, a.svc+"-"+strings.ReplaceAll(v.name, a.svc, "ten")+"-p50-ms")
		}
	}
}

// directCold starts the app as a plain child process and polls it every
// 250µs until it answers; the time is from before exec to the first byte.
func directCold(b *testing.B, a coldApp) (time.Duration, error) {
	port := freePort(b)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	t0 := time.Now()
	d := startDirect(b, []string{"PORT=" + strconv.Itoa(port), "TEN_INSTANCE=direct"}, a.direct(port)...)
	defer d.stop()
	deadline := t0.Add(30 * time.Second)
	for {
		at := time.Now()
		fb, err := firstByte(addr, "localhost", 5*time.Second)
		if err == nil {
			return at.Sub(t0) + fb, nil
		}
		select {
		case <-d.done:
			return 0, fmt.Errorf("%v exited before it answered", a.direct(port))
		default:
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%v: no answer within 30s: %v", a.direct(port), err)
		}
		time.Sleep(250 * time.Microsecond)
	}
}

// proxyd is systemd-socket-proxyd socket-activated on a TCP port in front
// of one app, as unit files in /run/systemd/system.
type proxyd struct {
	b     *testing.B
	name  string
	addr  string
	units []string
}

func newProxyd(b *testing.B, a coldApp) *proxyd {
	port, appPort := freePort(b), freePort(b)
	name := "ten-bench-" + a.svc
	p := &proxyd{b: b, name: name, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	files := map[string]string{}
	// Rate limits off, as ten does for its units: every sample is a start.
	const noLimit = "[Unit]\nStartLimitIntervalSec=0\n"
	files[name+"-proxy.socket"] = fmt.Sprintf("[Socket]\nListenStream=%s\nTriggerLimitIntervalSec=0\n", p.addr)
	var target, deps string
	if a.socketActivated {
		sock := "/run/" + name + ".sock"
		target = sock
		files[name+"-app.socket"] = fmt.Sprintf("[Socket]\nListenStream=%s\nTriggerLimitIntervalSec=0\n", sock)
		files[name+"-app.service"] = fmt.Sprintf(noLimit+"[Service]\nEnvironment=TEN_INSTANCE=proxyd\nExecStart=%s\n", a.proxyApp(appPort))
		deps = fmt.Sprintf("Requires=%[1]s-app.socket\nAfter=%[1]s-app.socket\n", name)
		p.units = []string{name + "-proxy.service", name + "-app.service"}
	} else {
		target = fmt.Sprintf("127.0.0.1:%d", appPort)
		// systemd-socket-proxyd does not retry a refused connect, so the
		// app's service is not started until the app listens.
		files[name+"-app.service"] = fmt.Sprintf(noLimit+"[Service]\nEnvironment=TEN_INSTANCE=proxyd PORT=%d\nExecStart=%s\n"+
			"ExecStartPost=/bin/bash -c 'until (: >/dev/tcp/127.0.0.1/%d) 2>/dev/null; do sleep 0.001; done'\n", appPort, a.proxyApp(appPort), appPort)
		deps = fmt.Sprintf("Requires=%[1]s-app.service\nAfter=%[1]s-app.service\n", name)
		p.units = []string{name + "-proxy.service", name + "-app.service"}
	}
	files[name+"-proxy.service"] = fmt.Sprintf("[Unit]\nStartLimitIntervalSec=0\n%s\n[Service]\nExecStart=/lib/systemd/systemd-socket-proxyd %s\n", deps, target)
	writeUnits(b, files)
	systemctl(b, "start", name+"-proxy.socket")
	return p
}

// newSocketOnly is the socket-activated app behind a plain systemd socket
// unit on a unix socket, which the client connects to itself: what systemd
// costs without any proxy, for reading ten's share off the ten rows.
func newSocketOnly(b *testing.B, a coldApp) *proxyd {
	name := "ten-bench-sd-" + a.svc
	p := &proxyd{b: b, name: name, addr: "/run/" + name + ".sock", units: []string{name + ".service"}}
	files := map[string]string{
		name + ".socket":  fmt.Sprintf("[Socket]\nListenStream=%s\nTriggerLimitIntervalSec=0\n", p.addr),
		name + ".service": fmt.Sprintf("[Unit]\nStartLimitIntervalSec=0\n[Service]\nEnvironment=TEN_INSTANCE=systemd\nExecStart=%s\n", a.proxyApp(0)),
	}
	writeUnits(b, files)
	systemctl(b, "start", name+".socket")
	return p
}

// writeUnits writes unit files into /run/systemd/system and reloads; they
// are stopped and removed when the benchmark ends.
func writeUnits(b *testing.B, files map[string]string) {
	for f, text := range files {
		if err := os.WriteFile(filepath.Join("/run/systemd/system", f), []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		var names []string
		for f := range files {
			names = append(names, f)
		}
		exec.Command("systemctl", append([]string{"stop"}, names...)...).Run()
		for f := range files {
			os.Remove(filepath.Join("/run/systemd/system", f))
		}
		exec.Command("systemctl", "daemon-reload").Run()
	})
	systemctl(b, "daemon-reload")
}

// sleep stops the proxy and the app; the proxy's socket keeps listening.
func (p *proxyd) sleep() {
	systemctl(p.b, append([]string{"stop"}, p.units...)...)
}

func systemctl(tb testing.TB, args ...string) {
	tb.Helper()
	if out, err := exec.Command("systemctl", args...).CombinedOutput(); err != nil {
		tb.Fatalf("systemctl %s: %v %s", strings.Join(args, " "), err, out)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// procSched is the CPU time of every thread of a process so far
// (schedstat, ns), e.g. ten serve's.
func procSched(pid int) time.Duration {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		sum += schedRunTask(pid, tid)
	}
	return sum
}

func schedRunTask(pid, tid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/schedstat", pid, tid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	ns, _ := strconv.ParseInt(f[0], 10, 64)
	return time.Duration(ns)
}

// unitSched is the CPU time every thread in a running unit's cgroup has
// used so far (schedstat): for a service just woken, its start-up (fork,
// sandbox set-up, exec, the shim, the app).
func unitSched(unit string) time.Duration {
	cg := strings.TrimSpace(showProp(unit, "ControlGroup"))
	if cg == "" {
		return 0
	}
	root := "/sys/fs/cgroup/unified"
	if _, err := os.Stat(root + "/cgroup.procs"); err != nil {
		root = "/sys/fs/cgroup"
	}
	b, err := os.ReadFile(root + cg + "/cgroup.threads")
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, l := range strings.Fields(string(b)) {
		tid, _ := strconv.Atoi(l)
		sum += schedRun(tid)
	}
	return sum
}
