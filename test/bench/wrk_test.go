package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// wrkReport is what wrkReportLua prints at the end of a wrk run.
type wrkReport struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Timeout    int64   `json:"timeout"`
	Status     int64   `json:"status"`
	MinUS      float64 `json:"min"`
	P50US      float64 `json:"p50"`
	P99US      float64 `json:"p99"`
	MaxUS      float64 `json:"max"`
	// CPUPerReqUS is the proxy's CPU per request served (withCPU), 0
	// when not measured.
	CPUPerReqUS float64 `json:"-"`
}

func (r wrkReport) rps() float64 { return float64(r.Requests) / (float64(r.DurationUS) / 1e6) }

// errors are wrk's socket errors plus answers that were not 2xx/3xx.
func (r wrkReport) errors() int64 { return r.Connect + r.Read + r.Write + r.Timeout + r.Status }

func (r wrkReport) errorText() string {
	return fmt.Sprintf("connect %d, read %d, write %d, timeout %d, non-2xx %d", r.Connect, r.Read, r.Write, r.Timeout, r.Status)
}

func us(x float64) time.Duration { return time.Duration(x * float64(time.Microsecond)) }

// wrkReportLua makes wrk print its summary as one JSON line.
const wrkReportLua = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d,"min":%d,"p50":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency.min, latency:percentile(50), latency:percentile(99), latency.max))
end
`

// wrk runs wrk against url with the Host header for conns connections for
// d and returns its summary.
func wrk(b *testing.B, url, hostHeader string, conns int, d time.Duration, extraHeaders ...string) wrkReport {
	b.Helper()
	script := filepath.Join(os.TempDir(), "ten-bench-report.lua")
	if err := os.WriteFile(script, []byte(wrkReportLua), 0o644); err != nil {
		b.Fatal(err)
	}
	threads := min(conns, 2)
	args := []string{"-t", fmt.Sprint(threads), "-c", fmt.Sprint(conns), "-d", fmt.Sprintf("%ds", max(1, int(d.Round(time.Second)/time.Second))),
		"--timeout", "10s", "-s", script, "-H", "Host: " + hostHeader}
	for _, h := range extraHeaders {
		args = append(args, "-H", h)
	}
	args = append(args, url)
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
