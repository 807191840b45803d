package system

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// An instance made by a ten from before bucket slices has its units in
// tenement-SVC-ID.slice, directly in the service's slice. A new ten adopts
// it where it is: it wakes and serves, its traffic is counted (the
// accounting attaches to the legacy slice's cgroup), it is frozen and
// thawed in that cgroup, and removing it removes the legacy slice. A new
// instance beside it goes into its bucket.
func TestLegacySliceAdopted(t *testing.T) {
	s := startTen(t, `
[service.leg]
command = "ECHO --mode activation"
activation = "socket"
isolation = "process"
idle_timeout = 1
sleep = "freeze"
`)
	s.kill()

	// The units as the earlier ten made them: ten's own plan, with the
	// slice it used then.
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	old := units.Instance{Service: "leg", ID: "old"}
	cat, _ := exec.LookPath("systemd-cat")
	plan, err := units.Build(cfg, cfg.Services["leg"], old.ID, units.Options{Port: freePort(t), Cat: cat,
		Resolve: func(cmd, _ string) (string, error) { return cmd, nil }})
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range [][]sd.Property{plan.Socket, plan.Service} {
		for i := range ps {
			if ps[i].Name == "Slice" {
				ps[i].Value = dbus.MakeVariant(old.LegacySlice())
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := sd.NewSystemConnectionContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch := make(chan string, 1)
	aux := []sd.PropertyCollection{{Name: old.ServiceUnit(), Properties: plan.Service}}
	if _, err := conn.StartTransientUnitAux(ctx, old.SocketUnit(), "fail", plan.Socket, aux, ch); err != nil {
		t.Fatal(err)
	}
	if res := <-ch; res != "done" {
		t.Fatalf("start %s: %s", old.SocketUnit(), res)
	}

	s.start() // adopts leg:old
	// The unit changes come over systemd's private socket (no Subscribe,
	// which would make systemd signal the bus daemon every change).
	if !strings.Contains(s.log.String(), `msg="following systemd's unit changes" over=/run/systemd/private`) {
		t.Errorf("ten does not follow systemd over its private socket:\n%s", s.log.String())
	}
	body := s.mustGet("old.leg.localhost", "/")
	if !strings.Contains(body, "hello from leg:old") {
		t.Fatalf("leg:old answered %q", body)
	}
	pid := pidOf(t, body)
	if cg := show(t, old.ServiceUnit(), "ControlGroup"); cg != old.LegacySliceCgroup()+"/"+old.ServiceUnit() {
		t.Fatalf("%s runs in %s, not in its legacy slice", old.ServiceUnit(), cg)
	}
	// The app's own TCP connection (the router reaches it over a unix
	// socket, which the cgroup counters do not see).
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(io.Discard, c) }()
		}
	}()
	s.mustGet("old.leg.localhost", "/dial?addr="+sink.Addr().String()+"&n=3&ms=10")
	deadline := time.Now().Add(5 * time.Second)
	for s.metric("ten_instance_tx_bytes_total", "leg:old") <= 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no traffic counted for an instance in a legacy slice: tx %v", s.metric("ten_instance_tx_bytes_total", "leg:old"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	freeze := filepath.Join(systemd.ServiceDir(cgroupV2, old), "cgroup.freeze")
	if !strings.Contains(freeze, old.LegacySlice()) {
		t.Fatalf("ServiceDir of leg:old is %s, not in its legacy slice", freeze)
	}
	s.waitState("leg:old", "frozen", 8*time.Second)
	if b, err := os.ReadFile(freeze); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("ps says frozen; %s reads %q %v", freeze, b, err)
	}
	if again := pidOf(t, s.mustGet("old.leg.localhost", "/")); again != pid {
		t.Errorf("thawed leg:old answered from pid %s, was %s", again, pid)
	}

	// A new instance goes into its bucket.
	nu := units.Instance{Service: "leg", ID: "new"}
	s.mustTen("spawn", "leg:new")
	if sl := show(t, nu.SocketUnit(), "Slice"); sl != nu.Slice() {
		t.Errorf("%s is in %s, want %s", nu.SocketUnit(), sl, nu.Slice())
	}
	s.mustGet("new.leg.localhost", "/")
	if cg := show(t, nu.ServiceUnit(), "ControlGroup"); cg != nu.SliceCgroup()+"/"+nu.ServiceUnit() {
		t.Errorf("%s runs in %s, want %s", nu.ServiceUnit(), cg, nu.SliceCgroup()+"/"+nu.ServiceUnit())
	}

	// Removing the adopted instance removes its legacy slice too.
	s.mustTen("stop", "leg:old")
	if st := show(t, old.LegacySlice(), "ActiveState"); st == "active" {
		t.Errorf("%s is %s after its instance was removed", old.LegacySlice(), st)
	}
	if _, err := os.Stat(filepath.Join(cgroupV2, old.LegacySliceCgroup())); err == nil {
		t.Errorf("cgroup %s is left after its instance was removed", old.LegacySliceCgroup())
	}
	if st := show(t, nu.BucketSlice(), "ActiveState"); st != "active" {
		t.Errorf("bucket %s of the remaining instance is %s", nu.BucketSlice(), st)
	}
}
