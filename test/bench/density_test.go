package bench

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkDensity: 1,000 instances declared in [instances], all asleep
// (lazy start, socket activation, ten's default isolation):
//
//   - create: `ten serve` from exec to answering /health, which it does
//     once it has created every declared instance (one D-Bus call each);
//   - memory: ten's RSS with the service declared but no instance, then
//     with the 1,000 (both after 2 s of rest), and the growth per
//     instance; systemd's (PID 1 of the box) RSS before and after;
//   - idle CPU: ten's and systemd's user+system CPU time over 20 s with
//     1,000 sleepers (two of ten's 10 s health ticks), from 12 s after ten
//     began serving (past the first tick, which reads every new instance);
//   - wake 100 at once: 100 clients each GET a different sleeping
//     instance at the same moment; each request's latency, and the time
//     until the last answered;
//   - tear down: DELETE /api/instances/ID for all 1,000, 16 at a time.
//
// Then the same wake of 100 of n with isolation = "process", and the
// baseline: the same 100 apps started directly at once and polled.
func BenchmarkDensity(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	n := envInt("TEN_BENCH_DENSITY_N", 1000)
	const bench = "4 density"
	svc := `
[service.d]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
start = "lazy"
`
	// ten with the service and no instance: the memory baseline.
	ten := startTen(b, svc)
	time.Sleep(2 * time.Second)
	rss0, _ := procRSS(ten.pid())
	sd0, _ := procRSS(1)
	ten.stop()

	// The baseline: the same units, made and removed by systemd alone.
	// Without slices first: systemd's heap keeps what a run freed, so the
	// second run's growth counts from the first run's starting RSS.
	wake := min(100, n)
	oneSlice := systemdAlone(b, ten.config, "d", n, true, 0)
	alone := systemdAlone(b, ten.config, "d", n, false, wake)
	alone.rss[0] = oneSlice.rss[0]
	variant := fmt.Sprintf("%d declared, asleep", n)
	addRow(row{bench: bench, variant: variant, metric: "create: systemd alone (the same units over D-Bus, 8 at a time)", n: "1",
		p50: fmtDur(alone.create), note: fmt.Sprintf("%s per instance; systemd RSS growth %s per instance (socket, service, slice)",
			fmtDur(alone.create/time.Duration(n)), fmtBytes(float64(alone.rss[1]-alone.rss[0])/float64(n)))})
	addRow(row{bench: bench, variant: variant, metric: "create: systemd alone, no slice per instance (units in the bucket slices)", n: "1",
		p50: fmtDur(oneSlice.create), ratio: ratio(oneSlice.create.Seconds(), alone.create.Seconds(), "with slices"),
		note: fmt.Sprintf("%s per instance; systemd RSS growth %s per instance (socket, service)",
			fmtDur(oneSlice.create/time.Duration(n)), fmtBytes(float64(oneSlice.rss[1]-oneSlice.rss[0])/float64(n)))})
	addRow(row{bench: bench, variant: variant, metric: fmt.Sprintf("tear down: systemd alone (%d of the services running, as in ten's; stop the slice with both units, reset them; 8 at a time)", wake), n: "1",
		p50: fmtDur(alone.down), note: fmt.Sprintf("%s per instance; systemd RSS after %s", fmtDur(alone.down/time.Duration(n)), fmtBytes(float64(alone.rss[2])))})

	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("i%04d", i)
	}
	decl := "\n[instances]\nd = [\"" + strings.Join(ids, "\", \"") + "\"]\n"
	base := mustRead(b, ten.config)
	if err := os.WriteFile(ten.config, []byte(base+decl), 0o644); err != nil {
		b.Fatal(err)
	}
	ten.start(nil, 10*time.Minute)
	create := ten.ready
	if got := countUnits("tenement-d@*.socket"); got != n {
		b.Fatalf("%d socket units after start, want %d", got, n)
	}
	addRow(row{bench: bench, variant: fmt.Sprintf("%d declared, asleep", n), metric: "create (ten serve start → all made, serving)", n: "1",
		p50: fmtDur(create), ratio: ratio(create.Seconds(), alone.create.Seconds(), "systemd alone"), note: fmt.Sprintf("%s per instance", fmtDur(create/time.Duration(n)))})

	time.Sleep(2 * time.Second)
	rss1, _ := procRSS(ten.pid())
	sd1, _ := procRSS(1)
	addRow(row{bench: bench, variant: fmt.Sprintf("%d declared, asleep", n), metric: "ten RSS", n: "1", p50: fmtBytes(float64(rss1)),
		ratio: ratio(float64(rss1), float64(rss0), "0 instances"),
		note:  fmt.Sprintf("%s with 0 instances; growth %s per instance", fmtBytes(float64(rss0)), fmtBytes(float64(rss1-rss0)/float64(n)))})
	addRow(row{bench: bench, variant: fmt.Sprintf("%d declared, asleep", n), metric: "systemd (PID 1) RSS", n: "1", p50: fmtBytes(float64(sd1)),
		ratio: ratio(float64(sd1), float64(sd0), "0 instances"),
		note:  fmt.Sprintf("%s before; growth %s per instance (2 units each)", fmtBytes(float64(sd0)), fmtBytes(float64(sd1-sd0)/float64(n)))})

	// Steady state: past ten's first health tick after start (10 s,
	// health_check_interval), which reads every new instance once; then
	// 20 s, two more ticks.
	if settle := 12*time.Second - time.Since(ten.started.Add(ten.ready)); settle > 0 {
		time.Sleep(settle)
	}
	idle := 20 * time.Second
	c0, _ := procCPU(ten.pid())
	s0, _ := procCPU(1)
	time.Sleep(idle)
	c1, _ := procCPU(ten.pid())
	s1, _ := procCPU(1)
	addRow(row{bench: bench, variant: fmt.Sprintf("%d declared, asleep", n), metric: "ten CPU while idle", n: "1",
		p50:  fmt.Sprintf("%.2f%%", 100*float64(c1-c0)/float64(idle)),
		note: fmt.Sprintf("%s of CPU time over %s (one core = 100%%); systemd (PID 1) meanwhile %.2f%% (%s)", fmtDur(c1-c0), idle, 100*float64(s1-s0)/float64(idle), fmtDur(s1-s0))})

	// ps: GET /api/instances with every instance, three times.
	var lists []time.Duration
	for range 3 {
		var rows []map[string]any
		t0 := time.Now()
		if err := ten.api(http.MethodGet, "/api/instances", nil, &rows); err != nil {
			b.Fatal(err)
		}
		lists = append(lists, time.Since(t0))
		if len(rows) != n {
			b.Fatalf("GET /api/instances: %d rows, want %d", len(rows), n)
		}
	}
	addRow(durRow(bench, variant, "GET /api/instances (ten ps), all asleep", summarize(lists)))

	// A restart of ten serve: it adopts every instance from systemd.
	ten.stop()
	ten.start(nil, 5*time.Minute)
	addRow(row{bench: bench, variant: variant, metric: "restart: ten serve start → adopted all, serving", n: "1", p50: fmtDur(ten.ready)})

	// Wake 100 at once.
	hosts := make([]string, wake)
	for i := range hosts {
		hosts[i] = host("d:" + ids[i*(n/wake)])
	}
	all := wakeAll(bench, fmt.Sprintf("wake %d of %d at once: ten (isolation=namespace, default)", wake, n), hosts, func(i int) (time.Duration, error) {
		return firstByte(ten.addr, hosts[i], 60*time.Second)
	})
	b.ReportMetric(all.Seconds(), "wake100-s")

	// Tear down through the API, 16 at a time.
	t0 := time.Now()
	var wg sync.WaitGroup
	work := make(chan string)
	var delErrs sync.Map
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				if err := ten.api(http.MethodDelete, "/api/instances/d:"+id, nil, nil); err != nil {
					delErrs.Store(id, err)
				}
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	down := time.Since(t0)
	left := countUnits("tenement-d@*")
	nerr := 0
	delErrs.Range(func(k, v any) bool {
		if nerr == 0 {
			addNote("density: DELETE %v: %v", k, v)
		}
		nerr++
		return true
	})
	time.Sleep(2 * time.Second)
	rss2, _ := procRSS(ten.pid())
	sd2, _ := procRSS(1)
	addRow(row{bench: bench, variant: fmt.Sprintf("%d declared, asleep", n), metric: fmt.Sprintf("tear down (the %d woken still running; DELETE each, 16 at a time)", wake), n: "1", p50: fmtDur(down),
		ratio: ratio(down.Seconds(), alone.down.Seconds(), "systemd alone"),
		note:  fmt.Sprintf("%s per instance; %d errors, %d units left; after: ten RSS %s, systemd RSS %s", fmtDur(down/time.Duration(n)), nerr, left, fmtBytes(float64(rss2)), fmtBytes(float64(sd2)))})
	b.ReportMetric(create.Seconds(), "create-s")
	b.ReportMetric(down.Seconds(), "teardown-s")
	ten.stop()

	// The same wake with isolation = "process" (no sandbox: the n
	// instances declared again), and the baseline: the same 100 apps
	// started directly, at once, each polled until it answers. What is
	// left between these and the row above is what systemd's sandboxing
	// and ten cost under a thundering herd.
	pids := make([]string, n)
	for i := range pids {
		pids[i] = fmt.Sprintf("p%05d", i)
	}
	base = strings.Replace(base, "start = \"lazy\"\n", "start = \"lazy\"\nisolation = \"process\"\n", 1)
	if err := os.WriteFile(ten.config, []byte(base+"\n[instances]\nd = [\""+strings.Join(pids, "\", \"")+"\"]\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	ten.start(nil, 10*time.Minute)
	hosts = hosts[:0]
	for i := range wake {
		hosts = append(hosts, host("d:"+pids[i*(n/wake)]))
	}
	wakeAll(bench, fmt.Sprintf("wake %d of %d at once: ten (isolation=process)", wake, n), hosts, func(i int) (time.Duration, error) {
		return firstByte(ten.addr, hosts[i], 60*time.Second)
	})
	wakeAll(bench, fmt.Sprintf("wake %d at once: baseline, %d apps started directly and polled", wake, wake), hosts, func(int) (time.Duration, error) {
		return directCold(b, coldApps[1])
	})
}

// wakeAll runs sample(i) for every host at the same moment and adds a row:
// each one's latency, and in the note the time until the last answered.
func wakeAll(bench, variant string, hosts []string, sample func(i int) (time.Duration, error)) time.Duration {
	lat := make([]time.Duration, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			lat[i], errs[i] = sample(i)
		}()
	}
	t0 := time.Now()
	close(gate)
	wg.Wait()
	all := time.Since(t0)
	failed, n503, n504 := 0, 0, 0
	var ok []time.Duration
	for i, err := range errs {
		if err != nil {
			failed++
			if strings.Contains(err.Error(), " 503 ") {
				n503++
			}
			if strings.Contains(err.Error(), " 504 ") {
				n504++
			}
			if failed == 1 {
				addNote("%s, %s: %s failed: %v", bench, variant, hosts[i], err)
			}
		} else {
			ok = append(ok, lat[i])
		}
	}
	r := durRow(bench, variant, "connect → first byte, each", summarize(ok))
	r.note = fmt.Sprintf("all answered (or failed) %s after the start; %d failed", fmtDur(all), failed)
	if failed > 0 {
		r.note += fmt.Sprintf(" (%d × 503, %d × 504)", n503, n504)
	}
	addRow(r)
	return all
}

func mustRead(b *testing.B, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return string(data)
}

// countUnits counts loaded units matching a systemctl pattern.
func countUnits(pattern string) int {
	n := 0
	for _, u := range tenUnits() {
		if ok, _ := matchUnit(pattern, u); ok {
			n++
		}
	}
	return n
}
