package bench

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// BenchmarkLightSleep (issue 7): the same instance answering a request
// warm, just thawed from a freeze (sleep = "freeze"), and started again
// after a stop (sleep = "stop", socket activation), round by round; and the
// same for an L4 tenant behind sk_lookup, warm and frozen (the sk_lookup
// program's wake event makes ten thaw it). "added" is the sample minus the
// warm sample of the same round.
//
// Each round waits for ten's reaper to freeze the instance (idle_timeout =
// 1 s), so a round takes a little over a second.
func BenchmarkLightSleep(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	rounds := envInt("TEN_BENCH_FREEZE_N", 30)
	ten := startTen(b, `
[service.web]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
isolation = "process"
idle_timeout = 1
sleep = "freeze"

[service.tcp]
command = "ECHO"
args = ["--mode", "tcp"]
activation = "socket"
isolation = "process"
idle_timeout = 1
sleep = "freeze"
listen = ["tcp://127.0.7.1:7600"]

[instances]
web = ["a"]
tcp = ["a"]
`)
	const inst = "web:a"
	const l4 = "127.0.7.1:7600"
	waitFrozen := func(inst string) {
		deadline := time.Now().Add(10 * time.Second)
		for ten.state(inst) != "frozen" {
			if time.Now().After(deadline) {
				b.Fatalf("%s not frozen 10 s after its idle_timeout (%s)", inst, ten.state(inst))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	sample := func(what string) time.Duration {
		d, err := firstByte(ten.addr, host(inst), 30*time.Second)
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		return d
	}
	l4sample := func(what string) time.Duration {
		d, err := l4Greeting(l4, 30*time.Second)
		if err != nil {
			b.Fatalf("L4 %s: %v", what, err)
		}
		return d
	}
	var warm, frozen, stopped, l4warm, l4frozen []time.Duration
	// Round 0 warms caches and is not counted.
	for r := 0; r <= rounds; r++ {
		// Both instances wake (first round) or thaw, then idle together.
		sample("wake")
		l4sample("wake")
		waitFrozen(inst)
		waitFrozen("tcp:a")
		f := sample("frozen")
		w := sample("warm")
		lf := l4sample("frozen")
		lw := l4sample("warm")
		ten.sleep(inst) // stop, as sleep = "stop" does (it runs: just thawed)
		s := sample("stopped")
		if r == 0 {
			continue
		}
		warm, frozen, stopped = append(warm, w), append(frozen, f), append(stopped, s)
		l4warm, l4frozen = append(l4warm, lw), append(l4frozen, lf)
	}

	const bench = "7 light sleep"
	add := func(variant, metric string, xs, base []time.Duration, baseName string) {
		st := summarize(xs)
		r := durRow(bench, variant, metric, st)
		if base != nil {
			bs := summarize(base)
			added := make([]time.Duration, len(xs))
			for i := range xs {
				added[i] = xs[i] - base[i]
			}
			ad := summarize(added)
			r.ratio = ratio(float64(st.p50), float64(bs.p50), baseName)
			r.note = fmt.Sprintf("added over warm (paired by round): p50 %s, p99 %s", fmtDur(ad.p50), fmtDur(ad.p99))
		}
		addRow(r)
		b.ReportMetric(float64(st.p50)/1e6, strings.ReplaceAll(variant, " ", "-")+"-p50-ms")
	}
	add("HTTP warm (same instance)", "connect → first byte", warm, nil, "")
	add("HTTP wake from freeze", "connect → first byte", frozen, warm, "warm")
	add("HTTP wake from stop (socket activation)", "connect → first byte", stopped, warm, "warm")
	add("L4 warm (sk_lookup)", "connect → greeting", l4warm, nil, "")
	add("L4 wake from freeze (sk_lookup wake event)", "connect → greeting", l4frozen, l4warm, "warm")
	addNote("light sleep: Go app (echoapp, LISTEN_FDS), isolation=process; freeze method: %s", freezeMethod(ten))
}

// l4Greeting dials addr and returns the time to the first line the app
// sends (echoapp --mode tcp greets every connection).
func l4Greeting(addr string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(start.Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	if !strings.HasPrefix(line, "hello from ") {
		return 0, fmt.Errorf("greeting %q", line)
	}
	return d, nil
}

// freezeMethod is what ten serve logged about how it freezes.
func freezeMethod(ten *tenServer) string {
	for _, l := range strings.Split(ten.log.String(), "\n") {
		if strings.Contains(l, "name=freeze") {
			if i := strings.Index(l, "detail="); i >= 0 {
				return strings.Trim(l[i+len("detail="):], `"`)
			}
		}
	}
	return "?"
}
