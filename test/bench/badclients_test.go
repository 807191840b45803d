package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkBadClients: another tenant's latency while bad clients hit one
// instance: 300 slowloris connections (a header byte every 500 ms, opened
// again when ten answers 408), 20 clients that never read a streamed
// response, and 2,000 idle keep-alive connections (from five loopback
// addresses, 400 each: under the per-address cap). wrk measures GET / on the other
// instance at 1 and 16 connections, alone and with the bad clients, rounds
// interleaved; ten's RSS with them is in the note.
func BenchmarkBadClients(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	need(b, "wrk")
	rounds := envInt("TEN_BENCH_WARM_ROUNDS", 3)
	dur := time.Duration(envInt("TEN_BENCH_WARM_SECONDS", 4)) * time.Second
	ten := startTen(b, `
[service.web]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
isolation = "process"
start = "eager"

[instances]
web = ["bad", "good"]
`)
	waitAnswer(b, ten.addr, host("web:bad"), 10*time.Second)
	waitAnswer(b, ten.addr, host("web:good"), 10*time.Second)
	rss0, _ := procRSS(ten.pid())
	conns := []int{1, 16}
	res := map[string][]wrkReport{}
	var rssBad int64
	wrk(b, "http://"+ten.addr+"/", host("web:good"), 16, time.Second)
	for r := 0; r < rounds; r++ {
		for _, c := range conns {
			res[fmt.Sprintf("alone/%d", c)] = append(res[fmt.Sprintf("alone/%d", c)], wrk(b, "http://"+ten.addr+"/", host("web:good"), c, dur))
		}
		stop := badClients(b, ten.addr, host("web:bad"))
		for _, c := range conns {
			res[fmt.Sprintf("bad/%d", c)] = append(res[fmt.Sprintf("bad/%d", c)], wrk(b, "http://"+ten.addr+"/", host("web:good"), c, dur))
		}
		if v, err := procRSS(ten.pid()); err == nil && v > rssBad {
			rssBad = v
		}
		stop()
	}
	const bench = "2c bad clients"
	for _, c := range conns {
		for _, v := range []string{"alone", "bad"} {
			k := fmt.Sprintf("%s/%d", v, c)
			med := func(f func(wrkReport) float64) float64 {
				var xs []float64
				for _, r := range res[k] {
					xs = append(xs, f(r))
				}
				return medianF(xs)
			}
			var total, errs int64
			for _, r := range res[k] {
				total += r.Requests
				errs += r.errors()
			}
			name := "other tenant alone"
			if v == "bad" {
				name = "other tenant, bad clients on"
			}
			rw := row{bench: bench, variant: fmt.Sprintf("%d conn: %s", c, name), metric: "latency (wrk)", n: fmtNum(float64(total)),
				min:  fmtDur(us(med(func(r wrkReport) float64 { return r.MinUS }))),
				p50:  fmtDur(us(med(func(r wrkReport) float64 { return r.P50US }))),
				p99:  fmtDur(us(med(func(r wrkReport) float64 { return r.P99US }))),
				max:  fmtDur(us(med(func(r wrkReport) float64 { return r.MaxUS }))),
				note: fmt.Sprintf("req/s %s", fmtNum(med(func(r wrkReport) float64 { return r.rps() })))}
			if errs > 0 {
				rw.note += fmt.Sprintf("; %d errors", errs)
			}
			if v == "bad" {
				ka := fmt.Sprintf("alone/%d", c)
				alone := func(f func(wrkReport) float64) float64 {
					var xs []float64
					for _, r := range res[ka] {
						xs = append(xs, f(r))
					}
					return medianF(xs)
				}
				rw.ratio = fmt.Sprintf("p50 %s, p99 %s", ratio(med(func(r wrkReport) float64 { return r.P50US }), alone(func(r wrkReport) float64 { return r.P50US }), "alone"),
					ratio(med(func(r wrkReport) float64 { return r.P99US }), alone(func(r wrkReport) float64 { return r.P99US }), "alone"))
				rw.note += fmt.Sprintf("; ten RSS %s with bad clients, %s before", fmtBytes(float64(rssBad)), fmtBytes(float64(rss0)))
			}
			addRow(rw)
		}
	}
}

// badClients starts the bad clients against addr and returns their stop.
func badClients(b *testing.B, addr, hostHeader string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	keep := func(c net.Conn) {
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
	}
	dial := func(src string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		return d.DialContext(ctx, "tcp", addr)
	}
	// Slowloris: trickle a head, open again after each 408.
	for i := 0; i < 300; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := dial("127.0.0.3")
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				head := "GET / HTTP/1.1\r\nHost: " + hostHeader + "\r\nX-Slow: " + strings.Repeat("s", 200)
				for j := 0; j < len(head) && ctx.Err() == nil; j++ {
					if _, err := c.Write([]byte{head[j]}); err != nil {
						break
					}
					time.Sleep(500 * time.Millisecond)
				}
				c.Close()
			}
		}()
	}
	// Never-reading clients: ask for an endless stream, read nothing.
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := dial("127.0.0.4")
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				c.(*net.TCPConn).SetReadBuffer(4096)
				fmt.Fprintf(c, "GET /stream?n=100000000&ms=0 HTTP/1.1\r\nHost: %s\r\n\r\n", hostHeader)
				// Wait until ten gives up on it (write timeout), then again.
				c.SetReadDeadline(time.Now().Add(60 * time.Second))
				select {
				case <-ctx.Done():
				case <-time.After(40 * time.Second):
				}
				c.Close()
			}
		}()
	}
	// Idle keep-alive connections: one request each, then silence.
	start := time.Now()
	var idleWG sync.WaitGroup
	var failed int
	for a := 5; a < 10; a++ {
		src := fmt.Sprintf("127.0.0.%d", a)
		for w := 0; w < 8; w++ {
			idleWG.Add(1)
			go func() {
				defer idleWG.Done()
				for i := 0; i < 50; i++ {
					c, err := dial(src)
					if err != nil {
						mu.Lock()
						failed++
						mu.Unlock()
						continue
					}
					fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", hostHeader)
					if code, err := httpReadResponse(c); err == nil && code == 200 {
						keep(c)
					} else {
						c.Close()
						mu.Lock()
						failed++
						mu.Unlock()
					}
				}
			}()
		}
	}
	idleWG.Wait()
	mu.Lock()
	b.Logf("bad clients: %d idle keep-alive connections open (%d failed) in %s", len(open), failed, time.Since(start).Round(time.Millisecond))
	mu.Unlock()
	time.Sleep(time.Second)
	return func() {
		cancel()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

func httpReadResponse(c net.Conn) (int, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	code, _ := strconv.Atoi(f[1])
	cl := 0
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if l == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "content-length") {
			cl, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	_, err = io.CopyN(io.Discard, br, int64(cl))
	return code, err
}

// BenchmarkWarmH2C: the warm proxy over h2c (HTTP/2 with prior knowledge,
// as Caddy's `versions h2c` sends) beside HTTP/1.1, both driven by h2load
// (one stream per connection at a time) at 1 and 16 connections, rounds
// interleaved.
func BenchmarkWarmH2C(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	need(b, "h2load")
	rounds := envInt("TEN_BENCH_WARM_ROUNDS", 3)
	dur := envInt("TEN_BENCH_WARM_SECONDS", 4)
	ten := startTen(b, `
[service.web]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
isolation = "process"
start = "eager"

[instances]
web = ["a"]
`)
	waitAnswer(b, ten.addr, host("web:a"), 10*time.Second)
	type h2res struct{ rps, meanUS, minUS, maxUS float64 }
	res := map[string][]h2res{}
	run := func(proto string, c int) h2res {
		args := []string{"-c", fmt.Sprint(c), "-m", "1", "-t", fmt.Sprint(min(c, 2)), "-D", fmt.Sprint(dur), "-H", ":authority: " + host("web:a")}
		if proto == "http/1.1" {
			args = append(args, "--h1")
		}
		args = append(args, "http://"+ten.addr+"/")
		out, err := exec.Command("h2load", args...).CombinedOutput()
		if err != nil {
			b.Fatalf("h2load %v: %v\n%s", args, err, out)
		}
		return parseH2load(b, string(out))
	}
	for r := 0; r < rounds; r++ {
		for _, c := range []int{1, 16} {
			for _, p := range []string{"h2c", "http/1.1"} {
				k := fmt.Sprintf("%s/%d", p, c)
				res[k] = append(res[k], run(p, c))
			}
		}
	}
	for _, c := range []int{1, 16} {
		for _, p := range []string{"http/1.1", "h2c"} {
			k := fmt.Sprintf("%s/%d", p, c)
			med := func(f func(h2res) float64) float64 {
				var xs []float64
				for _, r := range res[k] {
					xs = append(xs, f(r))
				}
				return medianF(xs)
			}
			rw := row{bench: "2d warm proxy, h2c", variant: fmt.Sprintf("%d conn: ten, %s (h2load)", c, p), metric: "latency (h2load mean)", n: fmt.Sprint(len(res[k])) + " runs",
				min: fmtDur(us(med(func(r h2res) float64 { return r.minUS }))), p50: fmtDur(us(med(func(r h2res) float64 { return r.meanUS }))),
				max: fmtDur(us(med(func(r h2res) float64 { return r.maxUS }))), note: fmt.Sprintf("req/s %s; the p50 column is h2load's mean", fmtNum(med(func(r h2res) float64 { return r.rps })))}
			if p == "h2c" {
				h1 := fmt.Sprintf("http/1.1/%d", c)
				var xs []float64
				for _, r := range res[h1] {
					xs = append(xs, r.rps)
				}
				rw.ratio = "req/s " + ratio(med(func(r h2res) float64 { return r.rps }), medianF(xs), "http/1.1")
			}
			addRow(rw)
		}
	}
}

var (
	h2reqs = regexp.MustCompile(`finished in [^,]+, ([0-9.]+) req/s`)
	h2time = regexp.MustCompile(`time for request:\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)`)
	h2ok   = regexp.MustCompile(`requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
	h2st   = regexp.MustCompile(`status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx`)
)

func parseH2load(b *testing.B, out string) (r struct{ rps, meanUS, minUS, maxUS float64 }) {
	m := h2reqs.FindStringSubmatch(out)
	t := h2time.FindStringSubmatch(out)
	ok := h2ok.FindStringSubmatch(out)
	st := h2st.FindStringSubmatch(out)
	if m == nil || t == nil || ok == nil || st == nil {
		b.Fatalf("h2load output not understood:\n%s", out)
	}
	if ok[3] != "0" || ok[4] != "0" || st[1] != "0" || st[2] != "0" {
		b.Fatalf("h2load: failures or non-2xx answers:\n%s", out)
	}
	toUS := func(v, unit string) float64 {
		x, _ := strconv.ParseFloat(v, 64)
		switch unit {
		case "ms":
			return x * 1000
		case "s":
			return x * 1e6
		}
		return x
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	r.minUS, r.maxUS, r.meanUS = toUS(t[1], t[2]), toUS(t[3], t[4]), toUS(t[5], t[6])
	return r
}
