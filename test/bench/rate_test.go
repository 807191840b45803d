package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
)

// BenchmarkWakeRate: the most wakes per second ten sustains with no failed
// request, beside the most starts per second systemd gives the same units
// with no ten at all. TEN_BENCH_RATE_INSTANCES (32) instances with
// idle_timeout = 1, each with a client that sends its next request as soon
// as systemd reports the instance's service stopped (ten's reaper put it to
// sleep), so every request is a wake, for TEN_BENCH_RATE_SECONDS (20; the
// full run is 60). Then ten is stopped and the same units are driven
// directly: one worker per unit starts its service over D-Bus (what
// `systemctl start` sends, without forking systemctl), sends the same
// request on the unit's socket, and stops it again, for as long. Both for
// isolation = "process" and the default "namespace"; "ratio" is ten's rate
// over systemd's.
func BenchmarkWakeRate(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	n := envInt("TEN_BENCH_RATE_INSTANCES", 32)
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
	for _, iso := range []string{"process", "namespace"} {
		ten := startTen(b, `
[service.rt]
command = "ECHO"
args = ["--mode", "activation"]
activation = "socket"
idle_timeout = 1
isolation = "`+iso+`"

[instances]
rt = ["`+strings.Join(ids, `", "`)+`"]
`)
		tenRate := wakeRateTen(b, conn, ten, ids, dur)
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

// wakeRateTen runs one client per instance: request, then wait until
// systemd reports the service stopped, then the next request.
func wakeRateTen(b *testing.B, conn *sd.Conn, ten *tenServer, ids []string, dur time.Duration) rateResult {
	asleep := map[string]chan struct{}{}
	for _, id := range ids {
		asleep[serviceUnit("rt:"+id)] = make(chan struct{}, 1)
	}
	if err := conn.Subscribe(); err != nil {
		b.Fatal(err)
	}
	defer conn.Unsubscribe()
	updates, errs := make(chan *sd.SubStateUpdate, 1024), make(chan error, 16)
	conn.SetSubStateSubscriber(updates, errs)
	stopWatch := make(chan struct{})
	go func() {
		for {
			select {
			case u := <-updates:
				if ch, ok := asleep[u.UnitName]; ok && (u.SubState == "dead" || u.SubState == "failed") {
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			case <-errs:
			case <-stopWatch:
				return
			}
		}
	}()
	defer close(stopWatch)

	w0 := ten.wakes()
	var (
		mu     sync.Mutex
		lat    []time.Duration
		ok     atomic.Int64
		failed atomic.Int64
		firstE atomic.Value
	)
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := asleep[serviceUnit("rt:"+id)]
			for time.Now().Before(end) {
				d, err := firstByte(ten.addr, host("rt:"+id), 30*time.Second)
				if err != nil {
					failed.Add(1)
					firstE.CompareAndSwap(nil, fmt.Sprintf("%s: %v", id, err))
				} else {
					ok.Add(1)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
				select {
				case <-ch:
				case <-time.After(time.Until(end)):
					return
				}
			}
		}()
	}
	wg.Wait()
	w1 := ten.wakes()
	r := rateResult{ok: ok.Load(), failed: failed.Load(), lat: lat}
	r.rate = float64(w1[0]-w0[0]) / dur.Seconds()
	r.note = fmt.Sprintf("; ten_wakes_total +%d ok, +%d failed", w1[0]-w0[0], w1[1]-w0[1])
	if e := firstE.Load(); e != nil {
		r.note += "; first failure " + e.(string)
	}
	return r
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
