package fleet

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkFleetForward measures what a forward between nodes adds: from a
// client in n1's network namespace, warm keep-alive GETs for web:a (placed
// on n2) go either straight to n2's router (the baseline) or to n1's
// router, which forwards them to n2's. Rounds of TEN_BENCH_FLEET_N
// requests (200) alternate between the two in a shuffled order,
// TEN_BENCH_FLEET_ROUNDS times (10). Two more variants ask for the service,
// web.DOMAIN, whose one instance is web:a: at n2, which picks its own
// instance (in fleet mode service hosts take the general proxy path, not
// the fast path), and at n1, which picks web:a across the fleet and
// forwards. It prints one row per variant in the table format of
// test/bench.
//
//	go test -run '^$' -bench FleetForward -benchtime 1x ./test/fleet/
func BenchmarkFleetForward(b *testing.B) {
	if b.N > 1 {
		b.Skip("runs once (-benchtime 1x)")
	}
	require(b)
	c := newCluster(b, services)
	n1, n2 := c.nodes[0], c.nodes[1]
	n1.mustCLI("spawn", "web:a", "--node", "n2")
	per, rounds := envInt("TEN_BENCH_FLEET_N", 200), envInt("TEN_BENCH_FLEET_ROUNDS", 10)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return n1.b.Dial(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 4,
	}}
	get := func(router, host string) (time.Duration, error) {
		req, _ := http.NewRequest("GET", "http://"+router+":8080/", nil)
		req.Host = host
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(start), nil
	}
	variants := []struct{ name, router, host string }{
		{"direct to the owning node's router (baseline)", n2.ip, "a.web.fleet.test"},
		{"through another node's router (forwarded)", n1.ip, "a.web.fleet.test"},
		{"web.DOMAIN at the owning node (fleet pick, local)", n2.ip, "web.fleet.test"},
		{"web.DOMAIN at another node (fleet pick, forwarded)", n1.ip, "web.fleet.test"},
	}
	// Warm both paths (connections, pools, the app).
	for _, v := range variants {
		for i := 0; i < 50; i++ {
			if _, err := get(v.router, v.host); err != nil {
				b.Fatalf("%s: %v", v.name, err)
			}
		}
	}
	samples := make([][]time.Duration, len(variants))
	for r := 0; r < rounds; r++ {
		for _, i := range rand.Perm(len(variants)) {
			for k := 0; k < per; k++ {
				d, err := get(variants[i].router, variants[i].host)
				if err != nil {
					b.Fatalf("%s: %v", variants[i].name, err)
				}
				samples[i] = append(samples[i], d)
			}
		}
	}
	base := pct(samples[0], 50)
	printMu.Lock()
	defer printMu.Unlock()
	fmt.Println("| benchmark | variant | n | min | p50 | p99 | max | added p50 |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for i, v := range variants {
		s := samples[i]
		added := "-"
		if i > 0 {
			added = us(pct(s, 50) - base)
		}
		fmt.Printf("| fleet forward (warm GET, keep-alive) | %s | %d | %s | %s | %s | %s | %s |\n", v.name, len(s), us(pct(s, 0)), us(pct(s, 50)), us(pct(s, 99)), us(pct(s, 100)), added)
	}
}

var printMu sync.Mutex

// pct is the nearest-rank percentile p of s (0: min, 100: max).
func pct(s []time.Duration, p int) time.Duration {
	s = slices.Clone(s)
	slices.Sort(s)
	if p <= 0 {
		return s[0]
	}
	i := (p*len(s)+99)/100 - 1
	return s[min(max(i, 0), len(s)-1)]
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
