package bench

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkL4: the L4 path through a real `ten serve` (issue 3): a raw TCP
// echo tenant (echoapp --mode tcp, socket activation, running) with one L4
// address, reached three ways:
//
//	direct     the instance's internal TCP socket, which systemd holds and
//	           the app accepts on (TEN_L4_SOCKETS): no dispatch at all
//	sk_lookup  the instance's L4 address; ten's BPF sk_lookup program hands
//	           the connection to that same socket
//	userspace  the same address with TEN_DISABLE_BPF=1: ten's userspace
//	           proxy accepts and splices to the internal socket
//
// Workloads: connect (dial, read the app's greeting) and rtt (a 64-byte
// line echoed on an open connection). direct and the dispatched path are
// interleaved in blocks within each phase (BPF, then no BPF).
//
// Also, when TEN_BENCH_L4_FILE names the output of bpf/dispatch's
// BenchmarkL4 (make bench runs it just before, same machine), its numbers
// are added to the table: the same comparison in-process, with throughput.
func BenchmarkL4(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	const bench = "3 L4"
	n := envInt("TEN_BENCH_L4_N", 400)
	for _, ph := range []struct {
		name, addr string
		env        []string
	}{
		{"sk_lookup (ten, BPF)", "127.0.1.1", nil},
		{"userspace proxy (ten, TEN_DISABLE_BPF=1)", "127.0.2.1", []string{"TEN_DISABLE_BPF=1"}},
	} {
		ten := startTen(b, fmt.Sprintf(`
[service.tcp]
command = "ECHO"
args = ["--mode", "tcp"]
activation = "socket"
isolation = "process"
start = "eager"
listen = ["tcp://%s:7000"]

[instances]
tcp = ["a"]
`, ph.addr), ph.env...)
		inst := "tcp:a"
		internal := l4Internal(b, inst)
		dispatched := ph.addr + ":7000"
		// Wait until both answer.
		for _, a := range []string{internal, dispatched} {
			deadline := time.Now().Add(20 * time.Second)
			for {
				if _, err := l4Connect(a); err == nil {
					break
				} else if time.Now().After(deadline) {
					b.Fatalf("L4 %s does not answer: %v", a, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		targets := []string{internal, dispatched}
		conn := make([][]time.Duration, 2)
		rtt := make([][]time.Duration, 2)
		const block = 50
		for done := 0; done < n; done += block {
			for ti, a := range targets {
				for k := 0; k < block; k++ {
					d, err := l4Connect(a)
					if err != nil {
						b.Fatalf("connect %s: %v", a, err)
					}
					conn[ti] = append(conn[ti], d)
				}
				ds, err := l4RTT(a, block*4)
				if err != nil {
					b.Fatalf("rtt %s: %v", a, err)
				}
				rtt[ti] = append(rtt[ti], ds...)
			}
		}
		for _, w := range []struct {
			metric string
			s      [][]time.Duration
		}{{"connect → greeting", conn}, {"64 B echo RTT", rtt}} {
			d, x := summarize(w.s[0]), summarize(w.s[1])
			rd := durRow(bench, "via ten serve: direct to the instance's socket", w.metric, d)
			rd.note = "baseline for the row below"
			addRow(rd)
			rx := durRow(bench, "via ten serve: "+ph.name, w.metric, x)
			rx.ratio = ratio(float64(x.p50), float64(d.p50), "direct")
			rx.note = fmt.Sprintf("added p50 %s", fmtDur(x.p50-d.p50))
			addRow(rx)
		}
		// Remove the instance while ten runs, so that its dispatch entry goes
		// too, then stop ten.
		if err := ten.api("DELETE", "/api/instances/"+inst, nil, nil); err != nil {
			b.Fatal(err)
		}
		ten.stop()
		removeAllUnits()
	}
	if f := os.Getenv("TEN_BENCH_L4_FILE"); f != "" {
		addEBPFRows(b, f)
	}
}

// l4Internal is the instance's internal TCP socket, from TEN_L4_SOCKETS in
// its service's environment.
func l4Internal(b *testing.B, inst string) string {
	out, err := exec.Command("systemctl", "show", "-p", "Environment", "--value", serviceUnit(inst)).Output()
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`TEN_L4_SOCKETS=([0-9.:]+)`).FindStringSubmatch(string(out))
	if m == nil {
		b.Fatalf("%s has no TEN_L4_SOCKETS: %s", serviceUnit(inst), out)
	}
	return m[1]
}

// l4Connect dials addr and reads the app's greeting line.
func l4Connect(addr string) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT pile-up
	defer c.Close()
	c.SetDeadline(start.Add(10 * time.Second))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// l4RTT opens one connection and times n echoes of a 64-byte line.
func l4RTT(addr string, n int) ([]time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.(*net.TCPConn).SetLinger(0)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		return nil, err
	}
	line := []byte(strings.Repeat("x", 63) + "\n")
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := c.Write(line); err != nil {
			return nil, err
		}
		if _, err := br.ReadString('\n'); err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(t0))
	}
	return ds, nil
}

// addEBPFRows reads `go test -bench L4 -count N ./bpf/dispatch/` output:
// lines like "BenchmarkL4/rtt/direct-2  2000  51392 ns/op  [1649.88 MB/s]".
func addEBPFRows(b *testing.B, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		addNote("L4: no bpf/dispatch BenchmarkL4 output at %s: %v", path, err)
		return
	}
	re := regexp.MustCompile(`^BenchmarkL4/(\w+)/(\w+)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op(?:\s+([0-9.]+) MB/s)?`)
	type key struct{ w, t string }
	ns := map[key][]time.Duration{}
	mbs := map[key][]float64{}
	var order []key
	for _, l := range strings.Split(string(data), "\n") {
		m := re.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		k := key{m[1], m[2]}
		if _, seen := ns[k]; !seen {
			order = append(order, k)
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		ns[k] = append(ns[k], time.Duration(v))
		if m[4] != "" {
			x, _ := strconv.ParseFloat(m[4], 64)
			mbs[k] = append(mbs[k], x)
		}
	}
	if len(order) == 0 {
		addNote("L4: %s holds no BenchmarkL4 results", path)
		return
	}
	for _, k := range order {
		st := summarize(ns[k])
		r := durRow("3 L4", "bpf/dispatch BenchmarkL4 (in-process echo, own netns): "+k.t, k.w+" (ns/op, per run)", st)
		r.p99 = "" // n is the number of runs (-count); a p99 of a handful of means says nothing
		base := summarize(ns[key{k.w, "direct"}])
		if k.t != "direct" {
			r.ratio = ratio(float64(st.p50), float64(base.p50), "direct")
		}
		if x := mbs[k]; len(x) > 0 {
			r.note = fmt.Sprintf("%.0f MB/s median", medianF(x))
		}
		addRow(r)
	}
}
