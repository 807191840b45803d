package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"golang.org/x/sys/unix"

	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// BenchmarkWakeRate: the most wakes per second ten sustains with no failed
// request, beside the most starts per second systemd gives the same units
// with no ten at all. TEN_BENCH_RATE_INSTANCES (192) instances with
// idle_timeout = 1, each with a client that sends its next request as soon
// as systemd reports the instance's service stopped (ten's reaper put it to
// sleep), so every request is a wake, for TEN_BENCH_RATE_SECONDS (20; the
// full run is 60). Then ten is stopped and the same units are driven
// directly: one worker per unit starts its service over D-Bus (what
// `systemctl start` sends, without forking systemctl), sends the same
// request on the unit's socket, and stops it again, for as long. Both for
// isolation = "process" and the default "namespace"; "ratio" is ten's rate
// over systemd's. Each instance can wake at most about once per
// idle_timeout + reaper tick + stop + wake (~1.3 s): 32 instances capped
// ten near 25 wakes/s, about systemd's own rate on an idle 2-core machine,
// so that the benchmark measured its own bound; 96 cap it near 75/s, under
// what systemd alone does on a faster 2-core machine (80-118/s); 192 near
// 145/s. TEN_BENCH_RATE_CONC sets ten's max_concurrent_wakes (default: its
// own default); TEN_BENCH_RATE_ISOLATION runs one isolation level only.
func BenchmarkWakeRate(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	n := envInt("TEN_BENCH_RATE_INSTANCES", 192)
	dur := time.Duration(envInt("TEN_BENCH_RATE_SECONDS", 20)) * time.Second
	const bench = "10 wake rate"
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("r%03d", i)
	}
	ctx := context.Background()
	conn, err := sd.NewSystemConnectionContext(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	settings := ""
	if c := envInt("TEN_BENCH_RATE_CONC", 0); c > 0 {
		settings = fmt.Sprintf("max_concurrent_wakes = %d\n", c)
	}
	levels := []string{"process", "namespace"}
	if l := os.Getenv("TEN_BENCH_RATE_ISOLATION"); l != "" {
		levels = []string{l}
	}
	for _, iso := range levels {
		ten := startTen(b, settings+`
[service.rt]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
idle_timeout = 1
isolation = "`+iso+`"

[instances]
rt = ["`+strings.Join(ids, `", "`)+`"]
`)
		tenRate := wakeRateTen(b, ten, ids, dur)
		ten.stop()
		sdRate := wakeRateSystemd(b, conn, ids, dur)
		removeAllUnits()
		sdRate.variant = fmt.Sprintf("isolation=%s, %d units: systemd alone (start over D-Bus, request on the socket, stop)", iso, n)
		tenRate.variant = fmt.Sprintf("isolation=%s, %d instances: ten (idle_timeout = 1, request as each sleeps)", iso, n)
		tenRate.ratio = ratio(tenRate.rate, sdRate.rate, "systemd alone")
		for _, r := range []rateResult{sdRate, tenRate} {
			st := summarize(r.lat)
			row := durRow(bench, r.variant, "wakes per second (latency of each: ten connect → first byte; alone start → first byte)", st)
			row.p50 = fmt.Sprintf("%.1f/s", r.rate)
			row.min, row.p99, row.max = fmtDur(st.p50)+" p50", fmtDur(st.p99)+" p99", fmtDur(st.max)+" max"
			row.ratio = r.ratio
			row.note = fmt.Sprintf("%d wakes in %s, %d failed%s", r.ok, dur, r.failed, r.note)
			addRow(row)
		}
	}
}

type rateResult struct {
	variant, ratio, note string
	rate                 float64
	ok, failed           int64
	lat                  []time.Duration
}

// wakeRateTen runs one client per instance: request, then wait until the
// instance's service has stopped, then the next request. Each client first
// makes one request and waits for its stop; the clock starts once all
// have, so that every request it counts is a wake.
//
// A client learns of its service's stop from the kernel, with no call to
// systemd: the service's cgroup directory is removed (rmdir, which inotify
// reports on the instance's slice directory) once systemd has it stopped.
// It used go-systemd's SubState subscriber, which answers every signal of
// every unit with a GetAll of the unit's properties from PID 1: that load,
// which no real client makes, fell on the ten side only and held its rate
// down. A request can now come before ten has read the stop's signal: ten
// then passes it to the systemd-held socket as to a running instance, and
// systemd's socket activation starts the service. That is still a wake
// of a stopped instance by a request through ten, but ten_wakes_total does
// not count it, so the rate counts the requests, and the note gives both.
func wakeRateTen(b *testing.B, ten *tenServer, ids []string, dur time.Duration) rateResult {
	insts := make([]units.Instance, len(ids))
	for i, id := range ids {
		insts[i] = units.Instance{Service: "rt", ID: id}
	}
	asleep, stopWatch := cgroupStops(b, insts)
	defer stopWatch()

	var (
		mu     sync.Mutex
		lat    []time.Duration
		ok     atomic.Int64
		failed atomic.Int64
		firstE atomic.Value
	)
	request := func(inst units.Instance, count bool) {
		d, err := firstByte(ten.addr, host(inst.String()), 30*time.Second)
		if err != nil {
			failed.Add(1)
			firstE.CompareAndSwap(nil, fmt.Sprintf("%s: %v", inst, err))
			return
		}
		if count {
			ok.Add(1)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
	}
	// waitStop waits for inst's next stop after a request; a stop seen
	// before the request (the instance was asleep when the run began) is
	// not it.
	waitStop := func(ch chan struct{}, until time.Time) bool {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		select {
		case <-ch:
			return true
		case <-t.C:
			return false
		}
	}
	var warm sync.WaitGroup
	for _, inst := range insts {
		warm.Add(1)
		go func() {
			defer warm.Done()
			drain(asleep[inst])
			request(inst, false)
			drain(asleep[inst])
			if !waitStop(asleep[inst], time.Now().Add(30*time.Second)) {
				failed.Add(1)
				firstE.CompareAndSwap(nil, fmt.Sprintf("%s: not stopped 30 s after a request (idle_timeout = 1)", inst))
			}
		}()
	}
	warm.Wait()
	if failed.Load() > 0 {
		b.Fatalf("wake rate: warm-up: %v", firstE.Load())
	}

	w0 := ten.wakes()
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for _, inst := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				request(inst, true)
				drain(asleep[inst])
				if !waitStop(asleep[inst], end) {
					return
				}
			}
		}()
	}
	wg.Wait()
	w1 := ten.wakes()
	r := rateResult{ok: ok.Load(), failed: failed.Load(), lat: lat}
	r.rate = float64(r.ok) / dur.Seconds()
	r.note = fmt.Sprintf("; ten_wakes_total +%d ok, +%d failed", w1[0]-w0[0], w1[1]-w0[1])
	if n := r.ok - int64(w1[0]-w0[0]); n > 0 {
		r.note += fmt.Sprintf(" (%d more woken by socket activation before ten read the stop)", n)
	}
	if e := firstE.Load(); e != nil {
		r.note += "; first failure " + e.(string)
	}
	return r
}

// drain empties ch.
func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// cgroupStops reports each stop of insts' services: inotify's IN_DELETE of
// the service's cgroup directory in its slice's directory, in the cgroup
// hierarchy systemd keeps its own tree in (unified where there is one).
func cgroupStops(b *testing.B, insts []units.Instance) (map[units.Instance]chan struct{}, func()) {
	root := ""
	for _, r := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"} {
		if _, err := os.Stat(systemd.SliceDir(r, insts[0])); err == nil {
			root = r
			break
		}
	}
	if root == "" {
		b.Fatalf("no cgroup directory of %s's slice", insts[0])
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		b.Fatal(err)
	}
	chans := map[units.Instance]chan struct{}{}
	byWatch := map[int32]map[string]chan struct{}{}
	for _, inst := range insts {
		wd, err := unix.InotifyAddWatch(fd, systemd.SliceDir(root, inst), unix.IN_DELETE|unix.IN_ONLYDIR)
		if err != nil {
			unix.Close(fd)
			b.Fatalf("inotify on %s: %v", systemd.SliceDir(root, inst), err)
		}
		ch := make(chan struct{}, 1)
		chans[inst] = ch
		if byWatch[int32(wd)] == nil {
			byWatch[int32(wd)] = map[string]chan struct{}{}
		}
		byWatch[int32(wd)][inst.ServiceUnit()] = ch
	}
	f := os.NewFile(uintptr(fd), "inotify")
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return // closed
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				off += unix.SizeofInotifyEvent + int(ev.Len)
				if ev.Mask&unix.IN_ISDIR == 0 {
					continue
				}
				if ch := byWatch[ev.Wd][name]; ch != nil {
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return chans, func() { f.Close() }
}

// wakeRateSystemd drives the units with no ten: start, request on the
// unit's own socket, stop, in a loop per unit.
func wakeRateSystemd(b *testing.B, conn *sd.Conn, ids []string, dur time.Duration) rateResult {
	ctx := context.Background()
	var (
		mu     sync.Mutex
		lat    []time.Duration
		ok     atomic.Int64
		failed atomic.Int64
		firstE atomic.Value
	)
	// Everything asleep first.
	for _, id := range ids {
		ch := make(chan string, 1)
		if _, err := conn.StopUnitContext(ctx, serviceUnit("rt:"+id), "replace", ch); err == nil {
			<-ch
		}
	}
	job := func(f func(context.Context, string, string, chan<- string) (int, error), unit string) error {
		ch := make(chan string, 1)
		if _, err := f(ctx, unit, "replace", ch); err != nil {
			return err
		}
		if res := <-ch; res != "done" {
			return fmt.Errorf("%s: job %s", unit, res)
		}
		return nil
	}
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unit := serviceUnit("rt:" + id)
			sock := "/run/tenement/rt/" + id + ".sock"
			for time.Now().Before(end) {
				t0 := time.Now()
				err := job(conn.StartUnitContext, unit)
				if err == nil {
					_, err = firstByteNet("unix", sock, host("rt:"+id), 30*time.Second)
				}
				if err != nil {
					failed.Add(1)
					firstE.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
				if err := job(conn.StopUnitContext, unit); err != nil {
					failed.Add(1)
					firstE.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	r := rateResult{ok: ok.Load(), failed: failed.Load(), lat: lat}
	r.rate = float64(r.ok) / dur.Seconds()
	if e := firstE.Load(); e != nil {
		r.note = "; first failure " + e.(string)
	}
	return r
}
