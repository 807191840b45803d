package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// BenchmarkL4PortApp: L4 clients of an app that binds PORT itself
// (echoapp --mode port, an HTTP app; isolation = "process"), running, one
// L4 address, reached two ways in one run, interleaved in blocks:
//
//	app's PORT      127.0.0.1:PORT, no ten at all: the baseline
//	L4, direct      the L4 address: sk_lookup hands the connection to the
//	                app's own listening socket (no relay; the app sees the
//	                client's address)
//
// The shim's relay on the instance's internal socket (TEN_L4_SOCKETS) is
// not a third row: it serves only the connections that arrive before the
// app listens and exits at the hand-off, so on a running instance nothing
// accepts on that socket (a connection to it waits in systemd's backlog).
// The wake benchmarks measure the relay's part.
//
// Workloads: a new connection with one HTTP/1.0 GET (connect → whole
// answer) and a keep-alive GET on one open connection (RTT).
func BenchmarkL4PortApp(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	const bench = "3b L4, PORT app"
	n := envInt("TEN_BENCH_L4_N", 400)
	ten := startTen(b, `
[service.web]
command = "ECHO"
args = ["--mode", "port"]
isolation = "process"
start = "eager"
listen = ["tcp://127.0.5.1:7000"]

[instances]
web = ["a"]
`)
	inst := "web:a"
	out, err := exec.Command("systemctl", "show", "-p", "Environment", "--value", serviceUnit(inst)).Output()
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`\bPORT=([0-9]+)`).FindStringSubmatch(string(out))
	if m == nil {
		b.Fatalf("%s has no PORT: %s", serviceUnit(inst), out)
	}
	port := "127.0.0.1:" + m[1]
	const l4 = "127.0.5.1:7000"
	// Wait until the app answers on its L4 address as itself, the client's
	// address as the peer: ten has steered it to the app's socket.
	deadline := time.Now().Add(20 * time.Second)
	for {
		body, client, err := httpOnce(l4)
		if err == nil && strings.Contains(body, `"remote":"`+client+`"`) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("L4 %s does not reach the app directly: %v %q", l4, err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	targets := []struct{ name, addr string }{
		{"app's PORT (no ten)", port},
		{"L4 address, direct (sk_lookup → the app's socket)", l4},
	}
	conn := make([][]time.Duration, len(targets))
	rtt := make([][]time.Duration, len(targets))
	const block = 50
	for done := 0; done < n; done += block {
		for ti, t := range targets {
			for k := 0; k < block; k++ {
				t0 := time.Now()
				if _, _, err := httpOnce(t.addr); err != nil {
					b.Fatalf("GET over %s: %v", t.addr, err)
				}
				conn[ti] = append(conn[ti], time.Since(t0))
			}
			ds, err := httpRTT(t.addr, block*4)
			if err != nil {
				b.Fatalf("keep-alive GET over %s: %v", t.addr, err)
			}
			rtt[ti] = append(rtt[ti], ds...)
		}
	}
	for _, w := range []struct {
		metric string
		s      [][]time.Duration
	}{{"connect → whole answer (HTTP/1.0)", conn}, {"keep-alive GET RTT", rtt}} {
		base := summarize(w.s[0])
		for ti, t := range targets {
			st := summarize(w.s[ti])
			r := durRow(bench, t.name, w.metric, st)
			switch ti {
			case 0:
				r.note = "baseline"
			case 1:
				r.ratio = ratio(float64(st.p50), float64(base.p50), "PORT")
				r.note = fmt.Sprintf("added p50 %s", fmtDur(st.p50-base.p50))
			}
			addRow(r)
		}
	}
	if err := ten.api("DELETE", "/api/instances/"+inst, nil, nil); err != nil {
		b.Fatal(err)
	}
	ten.stop()
	removeAllUnits()
}

// httpOnce sends GET /info (HTTP/1.0) on a new connection and reads the
// whole answer; it returns the body and the client's own address.
func httpOnce(addr string) (string, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", "", err
	}
	c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT pile-up
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /info HTTP/1.0\r\nHost: l4\r\n\r\n"); err != nil {
		return "", "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", "", err
	}
	if !strings.HasPrefix(string(b), "HTTP/1.0 200") && !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		return string(b), "", fmt.Errorf("answer %q", b)
	}
	return string(b), c.LocalAddr().String(), nil
}

// httpRTT times n keep-alive GET / on one connection.
func httpRTT(addr string, n int) ([]time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.(*net.TCPConn).SetLinger(0)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	req, _ := http.NewRequest("GET", "http://l4/", nil)
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := req.Write(c); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			return nil, fmt.Errorf("status %d: %v", resp.StatusCode, err)
		}
		ds = append(ds, time.Since(t0))
	}
	return ds, nil
}
