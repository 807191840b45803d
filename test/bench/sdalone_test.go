package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/units"
)

// sdAlone is the baseline of the density benchmark: the very units ten
// makes for n instances of service svc (units.Build with ten's options:
// socket, service, and the per-instance slice systemd loads for them), made
// and removed straight over one D-Bus connection, 8 calls at a time as ten
// makes them, with no ten at all. create: one StartTransientUnitAux each
// (socket with its service); down: stop the slice (and with it socket and
// service) and reset both units, as ten's teardown does.
type sdAlone struct {
	create, down time.Duration
	// rss is systemd's (PID 1) RSS before, with the n instances, after.
	rss [3]int64
}

// With shared, the units go into the instance's bucket slice
// (tenement-SVC-b:NN.slice) instead of a slice of their own: what the
// per-instance slice costs systemd. Before the teardown, awake of the n
// services (every n/awake-th) are started and answer, as the instances
// ten's density benchmark woke are running when it tears them down: both
// teardowns stop the same number of running apps.
func systemdAlone(b *testing.B, cfgPath, svcName string, n int, shared bool, awake int) sdAlone {
	var out sdAlone
	cfg, err := config.Load(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	svc := cfg.Services[svcName]
	if svc == nil {
		b.Fatalf("%s declares no service %q", cfgPath, svcName)
	}
	cat, _ := exec.LookPath("systemd-cat")
	plans := make([]*units.Plan, n)
	for i := range plans {
		opts := units.Options{Port: 30000 + i%30000, Cat: cat, Resolve: func(cmd, workdir string) (string, error) {
			if filepath.IsAbs(cmd) {
				return cmd, nil
			}
			return exec.LookPath(cmd)
		}}
		p, err := units.Build(cfg, svc, fmt.Sprintf("sd%05d", i), opts)
		if err != nil {
			b.Fatal(err)
		}
		if shared {
			one := p.Instance.BucketSlice()
			for _, ps := range [][]sd.Property{p.Socket, p.Service} {
				for j := range ps {
					if ps[j].Name == "Slice" {
						ps[j].Value = dbus.MakeVariant(one)
					}
				}
			}
		}
		plans[i] = p
	}
	ctx := context.Background()
	conn, err := sd.NewSystemConnectionContext(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	job := func(start func(ch chan<- string) (int, error)) error {
		ch := make(chan string, 1)
		if _, err := start(ch); err != nil {
			return err
		}
		if res := <-ch; res != "done" {
			return fmt.Errorf("job %s", res)
		}
		return nil
	}
	each := func(f func(p *units.Plan) error) (time.Duration, int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		failed := 0
		sem := make(chan struct{}, 8)
		t0 := time.Now()
		for _, p := range plans {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := f(p); err != nil {
					mu.Lock()
					if failed == 0 {
						addNote("density, systemd alone: %s: %v", p.Instance, err)
					}
					failed++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return time.Since(t0), failed
	}
	out.rss[0], _ = procRSS(1)
	var failed int
	out.create, failed = each(func(p *units.Plan) error {
		aux := []sd.PropertyCollection{{Name: p.Instance.ServiceUnit(), Properties: p.Service}}
		return job(func(ch chan<- string) (int, error) {
			return conn.StartTransientUnitAux(ctx, p.Instance.SocketUnit(), "fail", p.Socket, aux, ch)
		})
	})
	if failed > 0 {
		b.Fatalf("systemd alone: %d of %d creates failed\n%s", failed, n, strings.Join(notes, "\n"))
	}
	time.Sleep(2 * time.Second)
	out.rss[1], _ = procRSS(1)
	for i := 0; i < awake; i++ {
		p := plans[i*(n/awake)]
		if err := job(func(ch chan<- string) (int, error) {
			return conn.StartUnitContext(ctx, p.Instance.ServiceUnit(), "replace", ch)
		}); err != nil {
			b.Fatalf("systemd alone: start %s: %v", p.Instance.ServiceUnit(), err)
		}
	}
	out.down, failed = each(func(p *units.Plan) error {
		// As ten removes an instance: one stop of its slice stops both
		// units (they require it); without a slice of its own, each unit.
		stop := []string{p.Instance.Slice()}
		if shared {
			stop = []string{p.Instance.SocketUnit(), p.Instance.ServiceUnit()}
		}
		for _, u := range stop {
			err := job(func(ch chan<- string) (int, error) { return conn.StopUnitContext(ctx, u, "replace", ch) })
			if err != nil && !strings.Contains(err.Error(), "not loaded") && !strings.Contains(err.Error(), "NoSuchUnit") {
				// A unit gone already is fine (ten's teardown says the same).
				return fmt.Errorf("stop %s: %w", u, err)
			}
		}
		for _, u := range []string{p.Instance.SocketUnit(), p.Instance.ServiceUnit()} {
			_ = conn.ResetFailedUnitContext(ctx, u)
		}
		return nil
	})
	if failed > 0 {
		b.Fatalf("systemd alone: %d of %d removals failed (see the notes)\n%s", failed, n, strings.Join(notes, "\n"))
	}
	time.Sleep(2 * time.Second)
	out.rss[2], _ = procRSS(1)
	return out
}
