package bench

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// row is one line of the results table. Every benchmark adds its rows with
// addRow; TestMain prints the table once all benchmarks have run.
type row struct {
	bench, variant, metric string
	n                      string
	min, p50, p99, max     string
	ratio, note            string
}

var (
	rowsMu sync.Mutex
	rows   []row
	notes  []string
)

func addRow(r row) {
	rowsMu.Lock()
	rows = append(rows, r)
	rowsMu.Unlock()
}

// addNote adds a line under the table (what was skipped and why, what
// failed).
func addNote(format string, args ...any) {
	rowsMu.Lock()
	notes = append(notes, fmt.Sprintf(format, args...))
	rowsMu.Unlock()
}

// stats are order statistics of a sample of durations.
type stats struct {
	n                  int
	min, p50, p99, max time.Duration
}

// summarize sorts a copy of ds and takes nearest-rank percentiles (with 30
// samples p99 is the largest: say n next to it, as the table does).
func summarize(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return stats{n: len(s), min: s[0], p50: pct(s, 50), p99: pct(s, 99), max: s[len(s)-1]}
}

func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

// medianF is the median of xs (the mean of the middle two for an even count).
func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// durRow is a row of latencies.
func durRow(bench, variant, metric string, st stats) row {
	return row{bench: bench, variant: variant, metric: metric, n: fmt.Sprint(st.n),
		min: fmtDur(st.min), p50: fmtDur(st.p50), p99: fmtDur(st.p99), max: fmtDur(st.max)}
}

// fmtDur prints three significant digits in a unit that suits the value.
func fmtDur(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d == 0:
		s = "0"
	case d < time.Microsecond:
		s = fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		s = sig3(float64(d)/1e3) + "µs"
	case d < time.Second:
		s = sig3(float64(d)/1e6) + "ms"
	default:
		s = sig3(float64(d)/1e9) + "s"
	}
	if neg {
		return "−" + s
	}
	return s
}

func sig3(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

// fmtNum prints a count or rate with thousands kept readable.
func fmtNum(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e4:
		return fmt.Sprintf("%.1fk", x/1e3)
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	default:
		return sig3(x)
	}
}

func fmtBytes(b float64) string {
	switch {
	case math.Abs(b) >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case math.Abs(b) >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case math.Abs(b) >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}

// ratio formats a/b as "×1.23 NAME" ("" when b is zero).
func ratio(a, b float64, name string) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return ""
	}
	return fmt.Sprintf("×%.2f %s", a/b, name)
}

// machine describes where and under what load this run happened; it is
// read at the start, before any benchmark loads the machine.
var machine = describeMachine()

func describeMachine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	load := loadavg()
	if l := os.Getenv("TEN_BENCH_LOAD"); l != "" {
		load = l + " (when make bench started), " + load + " (when these benchmarks started)"
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
	}
	sd := "systemd ?"
	if out, err := exec.Command("systemctl", "--version").Output(); err == nil {
		sd = strings.SplitN(string(out), " (", 2)[0]
	}
	osName := ""
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				osName = strings.Trim(v, `"`) + ", "
			}
		}
	}
	commit := ""
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = ", ten " + strings.TrimSpace(string(out))
		if out, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); len(out) > 0 {
			commit += " (+ uncommitted changes in the tree)"
		}
	}
	return fmt.Sprintf("%s: nproc %d (%s%s), %skernel %s, %s, %s; load average at start %s%s",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), model, mem, osName, kernel, sd, runtime.Version(), load, commit)
}

// loadavg is the 1, 5 and 15 minute load average.
func loadavg() string {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			return strings.Join(f[:3], " ")
		}
	}
	return "?"
}

// table renders the results as markdown.
func table() string {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s; at the end %s.\n", machine, loadavg())
	if where := os.Getenv("TEN_BOX"); where != "" {
		fmt.Fprintf(&b, "systemd: a private systemd booted by internal/systemtest (box %q; not PID 1 of the host), own network namespace, loopback only.\n", where)
	} else {
		fmt.Fprintf(&b, "systemd: PID 1 of this host.\n")
	}
	b.WriteString("\n| benchmark | variant | metric | n | min | p50 | p99 | max | ratio | note |\n")
	b.WriteString("|---|---|---|--:|--:|--:|--:|--:|---|---|\n")
	// In issue order ("1 cold wake" ...), whatever order the benchmarks ran in.
	sorted := slices.Clone(rows)
	slices.SortStableFunc(sorted, func(a, b row) int { return strings.Compare(a.bench, b.bench) })
	for _, r := range sorted {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.bench, r.variant, r.metric, r.n, r.min, r.p50, r.p99, r.max, r.ratio, r.note)
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}
