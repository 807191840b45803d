package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// BenchmarkWarmShim: what a running PORT or SOCKET_PATH app costs against
// the same app taking systemd's socket itself, all behind ten's router, by
// wrk at 16 keep-alive connections, rounds interleaved in one run:
//
//	activated  activation = "socket": the router → the systemd-held socket
//	           the app accepts from
//	port       activation = "shim", the app binds PORT: the app runs as the
//	           service's main process; the router dials 127.0.0.1:PORT
//	socket     the same, the app binds SOCKET_PATH
//	l4port     the PORT app with an L4 address: run directly as well (its
//	           launcher's relay hands off to the app's socket and exits)
//	private    the PORT app with network = "none": the router dials PORT
//	           inside the instance's own network namespace
//	relay      the PORT app behind ten-shim's relay (what every shim-mode
//	           app had before; kept for gVisor and for L4 addresses with a
//	           private network, here forced by network = "none" and an L4
//	           address)
//
// and each instance's memory as `ten ps` shows it (the service cgroup's
// MemoryCurrent) after the runs.
func BenchmarkWarmShim(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	need(b, "wrk")
	rounds := envInt("TEN_BENCH_WARM_ROUNDS", 3)
	dur := time.Duration(envInt("TEN_BENCH_WARM_SECONDS", 4)) * time.Second

	ten := startTen(b, `
[service.activated]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
isolation = "process"
start = "eager"

[service.port]
command = "ECHO"
args = ["--mode", "port"]
isolation = "process"
start = "eager"

[service.socket]
command = "ECHO"
args = ["--mode", "socket"]
isolation = "process"
start = "eager"

[service.l4port]
command = "ECHO"
args = ["--mode", "port"]
isolation = "process"
listen = ["tcp://127.0.9.2:7901"]
start = "eager"

[service.private]
command = "ECHO"
args = ["--mode", "port"]
isolation = "process"
network = "none"
start = "eager"

[service.relay]
command = "ECHO"
args = ["--mode", "port"]
isolation = "process"
network = "none"
listen = ["tcp://127.0.9.1:7900"]
start = "eager"

[instances]
activated = ["a"]
port = ["a"]
socket = ["a"]
l4port = ["a"]
private = ["a"]
relay = ["a"]
`)
	targets := []string{"activated:a", "port:a", "socket:a", "l4port:a", "private:a", "relay:a"}
	for _, t := range targets {
		waitAnswer(b, ten.addr, host(t), 10*time.Second)
	}
	const c = 16
	res := map[string][]wrkReport{}
	rng := rand.New(rand.NewPCG(3, 3))
	for _, t := range targets {
		wrk(b, "http://"+ten.addr+"/", host(t), c, time.Second)
	}
	for r := 0; r < rounds; r++ {
		for _, i := range rng.Perm(len(targets)) {
			t := targets[i]
			res[t] = append(res[t], wrk(b, "http://"+ten.addr+"/", host(t), c, dur))
		}
	}
	const bench = "2e warm shim"
	med := func(t string, f func(wrkReport) float64) float64 {
		var xs []float64
		for _, r := range res[t] {
			xs = append(xs, f(r))
		}
		return medianF(xs)
	}
	rps := func(r wrkReport) float64 { return r.rps() }
	p50 := func(r wrkReport) float64 { return r.P50US }
	mem := map[string]float64{}
	for _, t := range targets {
		var row struct {
			MemoryBytes uint64 `json:"memory_bytes"`
		}
		if err := ten.api("GET", "/api/instances/"+t, nil, &row); err != nil {
			b.Fatal(err)
		}
		mem[t] = float64(row.MemoryBytes)
	}
	for _, t := range targets {
		var total, errs int64
		var rs []float64
		for _, r := range res[t] {
			total += r.Requests
			errs += r.errors()
			rs = append(rs, r.rps())
		}
		rw := row{bench: bench, variant: fmt.Sprintf("%d conn: %s", c, t), metric: "latency (wrk)", n: fmtNum(float64(total)),
			min: fmtDur(us(med(t, func(r wrkReport) float64 { return r.MinUS }))),
			p50: fmtDur(us(med(t, p50))),
			p99: fmtDur(us(med(t, func(r wrkReport) float64 { return r.P99US }))),
			max: fmtDur(us(med(t, func(r wrkReport) float64 { return r.MaxUS }))),
		}
		rw.note = fmt.Sprintf("req/s %s (runs %s–%s); ten ps memory %s", fmtNum(medianF(rs)), fmtNum(slices.Min(rs)), fmtNum(slices.Max(rs)), fmtBytes(mem[t]))
		if errs > 0 {
			rw.note += fmt.Sprintf("; %d errors", errs)
		}
		if t != "activated:a" {
			rw.ratio = fmt.Sprintf("req/s %s; p50 %s; memory %s", ratio(med(t, rps), med("activated:a", rps), "activated"),
				ratio(med(t, p50), med("activated:a", p50), "activated"), ratio(mem[t], mem["activated:a"], "activated"))
		}
		addRow(rw)
		b.ReportMetric(med(t, rps), t+"-req/s")
	}
}
