package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkWarmProxy: requests/s and latency of GET / on a running
// instance, by wrk over loopback at 1, 16 and 64 connections (keep-alive),
// three ways:
//
//	direct  wrk → the app (echoapp, the same binary) on 127.0.0.1:PORT
//	ten     wrk → ten's router → the instance's unix socket → the app
//	nginx   wrk → Debian's nginx (reverse proxy, upstream keepalive 64) →
//	        the same instance's unix socket → the same app
//
// Runs of each target are interleaved (rounds, shuffled order) so that
// noise from the shared machine hits all three; the table gives medians over
// rounds of each run's figures.
func BenchmarkWarmProxy(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	need(b, "wrk", "nginx")
	rounds := envInt("TEN_BENCH_WARM_ROUNDS", 3)
	dur := time.Duration(envInt("TEN_BENCH_WARM_SECONDS", 4)) * time.Second

	var tenEnv []string
	pprofAddr := ""
	if os.Getenv("TEN_BENCH_PPROF") != "" {
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", freePort(b))
		tenEnv = append(tenEnv, "TEN_PPROF_LISTEN="+pprofAddr)
	}
	ten := startTen(b, `
[service.web]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
isolation = "process"
start = "eager"

[instances]
web = ["a"]
`, tenEnv...)
	inst := "web:a"
	waitAnswer(b, ten.addr, host(inst), 10*time.Second)
	sock := "/run/tenement/web/a.sock"

	port := freePort(b)
	app := startDirect(b, []string{"PORT=" + strconv.Itoa(port), "TEN_INSTANCE=direct"}, echoBin, "--mode", "port")
	b.Cleanup(app.stop)
	directAddr := fmt.Sprintf("127.0.0.1:%d", port)
	waitAnswer(b, directAddr, "localhost", 10*time.Second)

	nginxAddr, nginxGroup := startNginx(b, sock)
	waitAnswer(b, nginxAddr, host(inst), 10*time.Second)

	// cpu measures each proxy's CPU during a run (none for direct).
	targets := []struct {
		name, addr string
		cpu        func() time.Duration
	}{
		{"direct", directAddr, nil},
		{"ten", ten.addr, ten.cpu},
		{"nginx", nginxAddr, func() time.Duration { return groupCPU(nginxGroup) }},
	}
	conns := []int{1, 16, 64}
	res := map[string][]wrkReport{}
	key := func(t string, c int) string { return fmt.Sprintf("%s/%d", t, c) }
	rng := rand.New(rand.NewPCG(2, 2))
	// A short warm-up of each target first (connection pools, page cache).
	for _, t := range targets {
		wrk(b, "http://"+t.addr+"/", host(inst), 16, time.Second)
	}
	for r := 0; r < rounds; r++ {
		for _, c := range conns {
			for _, i := range rng.Perm(len(targets)) {
				t := targets[i]
				load := func() wrkReport { return wrk(b, "http://"+t.addr+"/", host(inst), c, dur) }
				if t.cpu != nil {
					res[key(t.name, c)] = append(res[key(t.name, c)], withCPU(t.cpu, load))
				} else {
					res[key(t.name, c)] = append(res[key(t.name, c)], load())
				}
			}
		}
	}

	if pprofAddr != "" {
		file := os.Getenv("TEN_BENCH_PPROF")
		cpuProfile(b, pprofAddr, file, func(d time.Duration) wrkReport { return wrk(b, "http://"+ten.addr+"/", host(inst), 16, d) })
		cpuProfile(b, pprofAddr, file+".c64", func(d time.Duration) wrkReport { return wrk(b, "http://"+ten.addr+"/", host(inst), 64, d) })
		cpuProfile(b, pprofAddr, file+".c1", func(d time.Duration) wrkReport { return wrk(b, "http://"+ten.addr+"/", host(inst), 1, d) })
	}

	const bench = "2 warm proxy"
	for _, c := range conns {
		med := func(t string, f func(wrkReport) float64) float64 {
			var xs []float64
			for _, r := range res[key(t, c)] {
				xs = append(xs, f(r))
			}
			return medianF(xs)
		}
		rps := func(r wrkReport) float64 { return r.rps() }
		for _, t := range targets {
			runs := res[key(t.name, c)]
			var total, errs int64
			var rs []float64
			for _, r := range runs {
				total += r.Requests
				errs += r.errors()
				rs = append(rs, r.rps())
			}
			row := row{bench: bench, variant: fmt.Sprintf("%d conn: %s", c, t.name), metric: "latency (wrk)", n: fmtNum(float64(total)),
				min: fmtDur(us(med(t.name, func(r wrkReport) float64 { return r.MinUS }))),
				p50: fmtDur(us(med(t.name, func(r wrkReport) float64 { return r.P50US }))),
				p99: fmtDur(us(med(t.name, func(r wrkReport) float64 { return r.P99US }))),
				max: fmtDur(us(med(t.name, func(r wrkReport) float64 { return r.MaxUS }))),
			}
			row.note = fmt.Sprintf("req/s %s (runs %s–%s)", fmtNum(medianF(rs)), fmtNum(slices.Min(rs)), fmtNum(slices.Max(rs)))
			cpuReq := func(r wrkReport) float64 { return r.CPUPerReqUS }
			if t.cpu != nil {
				row.note += fmt.Sprintf("; CPU/req %s", fmtDur(us(med(t.name, cpuReq))))
			}
			if errs > 0 {
				row.note += fmt.Sprintf("; %d errors", errs)
			}
			if t.name == "ten" {
				row.ratio = fmt.Sprintf("req/s %s, %s; p50 %s; CPU/req %s", ratio(med("ten", rps), med("direct", rps), "direct"), ratio(med("ten", rps), med("nginx", rps), "nginx"),
					ratio(med("ten", func(r wrkReport) float64 { return r.P50US }), med("nginx", func(r wrkReport) float64 { return r.P50US }), "nginx"),
					ratio(med("ten", cpuReq), med("nginx", cpuReq), "nginx"))
			}
			if t.name == "nginx" {
				row.ratio = fmt.Sprintf("req/s %s", ratio(med("nginx", rps), med("direct", rps), "direct"))
			}
			addRow(row)
			b.ReportMetric(med(t.name, rps), fmt.Sprintf("%s-c%d-req/s", t.name, c))
		}
	}
}

// startNginx runs Debian's nginx in the foreground from a config in a temp
// dir, proxying to the unix socket, and returns its address and process
// group (master and workers).
func startNginx(b *testing.B, sock string) (addr string, pgrp int) {
	dir := b.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(b))
	conf := fmt.Sprintf(`
user root;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	upstream app {
		server unix:%[2]s;
		keepalive 64;
	}
	server {
		listen %[3]s;
		location / {
			proxy_pass http://app;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $remote_addr;
		}
	}
}
`, dir, sock, addr)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	n := startDirect(b, nil, "nginx", "-p", dir, "-c", path, "-e", filepath.Join(dir, "logs", "error.log"), "-g", "daemon off;")
	b.Cleanup(n.stop)
	return addr, n.cmd.Process.Pid
}

// cpuProfile takes a CPU profile of ten (TEN_BENCH_PPROF=file: where to
// write it; ten serves pprof on addr) while load runs for a few seconds.
func cpuProfile(b *testing.B, addr, file string, load func(time.Duration) wrkReport) {
	done := make(chan struct{})
	var rep wrkReport
	go func() { defer close(done); rep = load(6 * time.Second) }()
	time.Sleep(500 * time.Millisecond)
	resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=5")
	if err != nil {
		b.Fatalf("pprof: %v", err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	<-done
	if err := os.WriteFile(file, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("CPU profile of ten under load: %s (go tool pprof -top bin/ten %s); the load served %.0f req/s over 6 s, the profile covers 5 s of it", file, file, rep.rps())
}
