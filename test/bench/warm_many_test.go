package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkWarmMany: the warm proxy with many tenants. 200 running
// instances of one service; wrk picks a Host per request (a Lua table of
// pre-formatted requests, so wrk's own cost is the same for every target):
//
//	ten-1    ten, every request for the same instance (the single-instance
//	         figure, with the same wrk script)
//	ten-200  ten, each request for one of the 200 instances at random
//	nginx-1  the same nginx, every request for the same instance
//	nginx-200 nginx with the same 200 upstreams (map $host → upstream,
//	         keepalive 16 each), requests spread the same way
//
// at 16 and 64 connections, rounds interleaved and shuffled. nginx-200 /
// nginx-1 is what spreading the load over 200 app processes costs the
// machine with no ten at all; the proxies' CPU per request is measured
// beside their requests/s.
func BenchmarkWarmMany(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	need(b, "wrk", "nginx")
	const n = 200
	rounds := envInt("TEN_BENCH_WARM_ROUNDS", 3)
	dur := time.Duration(envInt("TEN_BENCH_WARM_SECONDS", 4)) * time.Second
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("i%d", i)
	}
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
web = ["`+strings.Join(ids, `", "`)+`"]
`, tenEnv...)
	for _, id := range ids {
		waitAnswer(b, ten.addr, host("web:"+id), 30*time.Second)
	}
	nginxAddr, nginxGroup := startNginxMany(b, ids)
	waitAnswer(b, nginxAddr, host("web:i0"), 10*time.Second)

	one := []string{host("web:i0")}
	var all []string
	for _, id := range ids {
		all = append(all, host("web:"+id))
	}
	nginxCPU := func() time.Duration { return groupCPU(nginxGroup) }
	targets := []struct {
		name, addr string
		hosts      []string
		cpu        func() time.Duration
	}{{"ten-1", ten.addr, one, ten.cpu}, {"ten-200", ten.addr, all, ten.cpu}, {"nginx-1", nginxAddr, one, nginxCPU}, {"nginx-200", nginxAddr, all, nginxCPU}}
	conns := []int{16, 64}
	res := map[string][]wrkReport{}
	key := func(t string, c int) string { return fmt.Sprintf("%s/%d", t, c) }
	rng := rand.New(rand.NewPCG(3, 3))
	for _, t := range targets {
		wrkHosts(b, "http://"+t.addr+"/", t.hosts, 16, time.Second)
	}
	for r := 0; r < rounds; r++ {
		for _, c := range conns {
			for _, i := range rng.Perm(len(targets)) {
				t := targets[i]
				res[key(t.name, c)] = append(res[key(t.name, c)], withCPU(t.cpu, func() wrkReport { return wrkHosts(b, "http://"+t.addr+"/", t.hosts, c, dur) }))
			}
		}
	}
	if pprofAddr != "" {
		cpuProfile(b, pprofAddr, os.Getenv("TEN_BENCH_PPROF")+".many200", func(d time.Duration) wrkReport { return wrkHosts(b, "http://"+ten.addr+"/", all, 64, d) })
	}

	const bench = "2b warm proxy, 200 tenants"
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
			rw := row{bench: bench, variant: fmt.Sprintf("%d conn: %s", c, t.name), metric: "latency (wrk)", n: fmtNum(float64(total)),
				min: fmtDur(us(med(t.name, func(r wrkReport) float64 { return r.MinUS }))),
				p50: fmtDur(us(med(t.name, func(r wrkReport) float64 { return r.P50US }))),
				p99: fmtDur(us(med(t.name, func(r wrkReport) float64 { return r.P99US }))),
				max: fmtDur(us(med(t.name, func(r wrkReport) float64 { return r.MaxUS }))),
			}
			cpuReq := func(r wrkReport) float64 { return r.CPUPerReqUS }
			rw.note = fmt.Sprintf("req/s %s (runs %s–%s); CPU/req %s", fmtNum(medianF(rs)), fmtNum(slices.Min(rs)), fmtNum(slices.Max(rs)), fmtDur(us(med(t.name, cpuReq))))
			if errs > 0 {
				rw.note += fmt.Sprintf("; %d errors", errs)
			}
			switch t.name {
			case "ten-200":
				rw.ratio = fmt.Sprintf("req/s %s, %s; p99 %s; CPU/req %s", ratio(med("ten-200", rps), med("ten-1", rps), "ten-1"), ratio(med("ten-200", rps), med("nginx-200", rps), "nginx-200"),
					ratio(med("ten-200", func(r wrkReport) float64 { return r.P99US }), med("nginx-200", func(r wrkReport) float64 { return r.P99US }), "nginx-200"),
					ratio(med("ten-200", cpuReq), med("nginx-200", cpuReq), "nginx-200"))
			case "ten-1":
				rw.ratio = fmt.Sprintf("req/s %s; CPU/req %s", ratio(med("ten-1", rps), med("nginx-1", rps), "nginx-1"), ratio(med("ten-1", cpuReq), med("nginx-1", cpuReq), "nginx-1"))
			case "nginx-200":
				rw.ratio = fmt.Sprintf("req/s %s", ratio(med("nginx-200", rps), med("nginx-1", rps), "nginx-1"))
			}
			addRow(rw)
			b.ReportMetric(med(t.name, rps), fmt.Sprintf("%s-c%d-req/s", t.name, c))
		}
	}
}

// wrkHosts runs wrk with each request's Host picked at random from hosts.
func wrkHosts(b *testing.B, url string, hosts []string, conns int, d time.Duration) wrkReport {
	b.Helper()
	hj, _ := json.Marshal(hosts)
	lua := `
local hosts = {` + strings.Trim(string(hj), "[]") + `}
local reqs = {}
init = function(args)
  for i, h in ipairs(hosts) do reqs[i] = wrk.format("GET", "/", {Host = h}) end
end
request = function() return reqs[math.random(#reqs)] end
` + wrkReportLua
	script := filepath.Join(b.TempDir(), "hosts.lua")
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		b.Fatal(err)
	}
	args := []string{"-t", fmt.Sprint(min(conns, 2)), "-c", fmt.Sprint(conns), "-d", fmt.Sprintf("%ds", max(1, int(d.Round(time.Second)/time.Second))),
		"--timeout", "10s", "-s", script, url}
	out, err := exec.Command("wrk", args...).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if j, ok := strings.CutPrefix(l, "WRKJSON "); ok {
			var r wrkReport
			if err := json.Unmarshal([]byte(j), &r); err != nil {
				b.Fatalf("wrk report %q: %v", j, err)
			}
			return r
		}
	}
	b.Fatalf("wrk printed no report:\n%s", out)
	return wrkReport{}
}

// startNginxMany runs nginx with one upstream per instance, chosen by
// Host; it returns nginx's address and process group.
func startNginxMany(b *testing.B, ids []string) (addr string, pgrp int) {
	dir := b.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(b))
	var ups, m strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&ups, "\tupstream u_%s { server unix:/run/tenement/web/%s.sock; keepalive 16; }\n", id, id)
		fmt.Fprintf(&m, "\t\t%s u_%s;\n", host("web:"+id), id)
	}
	conf := fmt.Sprintf(`
user root;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	map_hash_bucket_size 128;
%[2]s
	map $host $up {
%[3]s	}
	server {
		listen %[4]s;
		location / {
			proxy_pass http://$up;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $remote_addr;
		}
	}
}
`, dir, ups.String(), m.String(), addr)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	nx := startDirect(b, nil, "nginx", "-p", dir, "-c", path, "-e", filepath.Join(dir, "logs", "error.log"), "-g", "daemon off;")
	b.Cleanup(nx.stop)
	return addr, nx.cmd.Process.Pid
}
