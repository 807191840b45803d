package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkHibernateChurn: instances with idle_timeout = 1 (ten's default
// isolation, socket activation) under bursty load for a bounded time
// (TEN_BENCH_CHURN_SECONDS, default 60). Each instance has a client that
// sends a burst of 4 concurrent requests (new connections), then pauses a
// random 0.3–2.7 s: shorter pauses find it awake, longer ones asleep, and
// some land while the reaper is stopping it, the race that could drop a
// request. Wakes are ten's own count (ten_wakes_total) and, as a check, the
// number of new app PIDs the clients saw.
func BenchmarkHibernateChurn(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	n := envInt("TEN_BENCH_CHURN_INSTANCES", 20)
	dur := time.Duration(envInt("TEN_BENCH_CHURN_SECONDS", 60)) * time.Second
	const burst = 4

	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%02d", i)
	}
	ten := startTen(b, `
[service.c]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
idle_timeout = 1

[instances]
c = ["`+strings.Join(ids, `", "`)+`"]
`)
	wakes0 := ten.wakes()

	type result struct {
		d   time.Duration
		err error
	}
	var (
		mu      sync.Mutex
		results []result
		newPIDs int
		firstE  error
	)
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	t0 := time.Now()
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			lastPID := ""
			for ctx.Err() == nil {
				var bw sync.WaitGroup
				pids := make([]string, burst)
				for k := 0; k < burst; k++ {
					bw.Add(1)
					go func() {
						defer bw.Done()
						start := time.Now()
						pid, err := getPID(client, ten.addr, host("c:"+id))
						r := result{time.Since(start), err}
						pids[k] = pid
						mu.Lock()
						results = append(results, r)
						if err != nil && firstE == nil {
							firstE = fmt.Errorf("c:%s: %w", id, err)
						}
						mu.Unlock()
					}()
				}
				bw.Wait()
				for _, p := range pids {
					if p != "" && p != lastPID {
						mu.Lock()
						newPIDs++
						mu.Unlock()
						lastPID = p
					}
				}
				pause := 300*time.Millisecond + time.Duration(rng.Int64N(int64(2400*time.Millisecond)))
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	wakes1 := ten.wakes()

	var ok []time.Duration
	failed := 0
	for _, r := range results {
		if r.err != nil {
			failed++
		} else {
			ok = append(ok, r.d)
		}
	}
	const bench = "6 hibernate churn"
	v := fmt.Sprintf("%d instances, idle_timeout=1, bursts of %d, %s", n, burst, dur)
	r := durRow(bench, v, "request latency", summarize(ok))
	r.note = fmt.Sprintf("%d requests, %d failed", len(results), failed)
	if firstE != nil {
		r.note += fmt.Sprintf(" (first: %v)", firstE)
	}
	addRow(r)
	wOK, wFail := wakes1[0]-wakes0[0], wakes1[1]-wakes0[1]
	addRow(row{bench: bench, variant: v, metric: "wakes handled per second", n: fmt.Sprint(wOK + wFail),
		p50:  fmt.Sprintf("%.1f/s", float64(wOK)/elapsed.Seconds()),
		note: fmt.Sprintf("ten_wakes_total: %d ok, %d failed over %s; clients saw %d new app PIDs", wOK, wFail, elapsed.Round(100*time.Millisecond), newPIDs)})
	b.ReportMetric(float64(wOK)/elapsed.Seconds(), "wakes/s")
	b.ReportMetric(float64(failed), "failed")
}

// getPID GETs / and returns the app's PID from its answer ("hello from
// INSTANCE pid N").
func getPID(c *http.Client, addr, hostHeader string) (string, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = hostHeader
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	f := strings.Fields(string(body))
	if len(f) >= 5 && f[3] == "pid" {
		return f[4], nil
	}
	return "", nil
}

// wakes sums ten_wakes_total from /metrics: [ok, failed].
func (s *tenServer) wakes() [2]int64 {
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.token())
	resp, err := apiClient.Do(req)
	if err != nil {
		s.tb.Fatal(err)
	}
	defer resp.Body.Close()
	var w [2]int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "ten_wakes_total{") {
			continue
		}
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		if strings.Contains(l, `result="failed"`) {
			w[1] += int64(v)
		} else {
			w[0] += int64(v)
		}
	}
	return w
}

// metricsPlain returns the unlabelled samples of /metrics whose name starts
// with prefix.
func (s *tenServer) metricsPlain(prefix string) map[string]float64 {
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.token())
	resp, err := apiClient.Do(req)
	if err != nil {
		s.tb.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && strings.HasPrefix(f[0], prefix) {
			v, _ := strconv.ParseFloat(f[1], 64)
			out[f[0]] = v
		}
	}
	return out
}
