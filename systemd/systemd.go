// Package systemd is ten's thin layer over systemd's D-Bus API (go-systemd):
// it creates and removes the transient socket+service pair of an instance,
// stops and starts services for sleep and wake, lists ten's units, reads their
// state and resource use, and follows their state changes. One D-Bus
// connection is reused for every call.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/units"
)

// ErrNoSystemd means no systemd answered on the system bus.
var ErrNoSystemd = errors.New("no systemd answers on the D-Bus system bus")

// Manager talks to systemd over one D-Bus connection.
type Manager struct {
	conn *sd.Conn
	log  *slog.Logger
	// dropped counts state changes Watch lost to a full buffer.
	dropped atomic.Uint64
	// cache is every unit's last known state (State), fed by Watch and List.
	cache *stateCache
	// priv is the connection to systemd's private socket while it is up
	// (Watch): removals call over it.
	priv atomic.Pointer[privateConn]
	// standby holds the instances on standby (SetStandby).
	standby standbySet
}

// Connect opens the system bus connection to systemd.
func Connect(ctx context.Context, log *slog.Logger) (*Manager, error) {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return nil, fmt.Errorf("%w: /run/systemd/system is missing, so systemd is not this system's init", ErrNoSystemd)
	}
	// The connection lives as long as ctx: no timeout on this context.
	conn, err := sd.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoSystemd, err)
	}
	if _, err := conn.GetManagerProperty("Version"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: %v", ErrNoSystemd, err)
	}
	return &Manager{conn: conn, log: log, cache: newStateCache()}, nil
}

// Close closes the bus connection.
func (m *Manager) Close() { m.conn.Close() }

// Version returns systemd's version string.
func (m *Manager) Version() string {
	v, _ := m.conn.GetManagerProperty("Version")
	return strings.Trim(v, `"`)
}

// JobError is a systemd job that ended without "done": Result is systemd's
// word for how it ended ("failed": the unit's start failed, e.g. the app
// exited; "timeout": a start timeout such as a PORT app's startup_timeout;
// "canceled", "dependency", ...).
type JobError struct {
	Op, Unit, Result string
	// UnitResult is the service's own Result after a failed job: "timeout"
	// when it did not become ready within its start timeout (a PORT app
	// that did not listen within startup_timeout), "exit-code" when the
	// app exited, ...; "" when not read.
	UnitResult string
}

// Error says which job on which unit ended how.
func (e *JobError) Error() string {
	if e.UnitResult != "" {
		return fmt.Sprintf("%s %s: job %s (result %s)", e.Op, e.Unit, e.Result, e.UnitResult)
	}
	return fmt.Sprintf("%s %s: job %s", e.Op, e.Unit, e.Result)
}

// TimedOut reports whether the job or the unit's start ran out of time.
func (e *JobError) TimedOut() bool { return e.Result == "timeout" || e.UnitResult == "timeout" }

// wait runs a job-starting call and waits for the job's result.
func (m *Manager) wait(ctx context.Context, unit, what string, start func(ch chan<- string) (int, error)) error {
	ch := make(chan string, 1)
	if _, err := start(ch); err != nil {
		return fmt.Errorf("%s %s: %w", what, unit, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			je := &JobError{Op: what, Unit: unit, Result: res}
			if res == "failed" && strings.HasSuffix(unit, ".service") {
				if p, err := m.conn.GetServicePropertyContext(ctx, unit, "Result"); err == nil {
					je.UnitResult, _ = p.Value.Value().(string)
				}
			}
			return je
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", what, unit, ctx.Err())
	}
}

// Create makes the instance's socket unit (listening) and its service unit
// (created, not started) in one StartTransientUnit call, the way
// `systemd-run --socket-property` does; with start it then starts the service.
func (m *Manager) Create(ctx context.Context, p *units.Plan, start bool) error {
	inst := p.Instance
	aux := []sd.PropertyCollection{{Name: inst.ServiceUnit(), Properties: p.Service}}
	err := m.wait(ctx, inst.SocketUnit(), "create", func(ch chan<- string) (int, error) {
		return m.conn.StartTransientUnitAux(ctx, inst.SocketUnit(), "fail", p.Socket, aux, ch)
	})
	if err != nil {
		m.cleanup(inst)
		return err
	}
	// Known now; the signals that follow refine it.
	m.cache.set(inst.SocketUnit(), UnitState{ActiveState: "active", SubState: "listening"})
	if _, ok := m.cache.get(inst.ServiceUnit()); !ok {
		m.cache.set(inst.ServiceUnit(), UnitState{ActiveState: "inactive", SubState: "dead"})
	}
	if start {
		if err := m.Start(ctx, inst); err != nil {
			m.cleanup(inst)
			return err
		}
	}
	m.log.Info("created instance", "instance", inst.String(), "socket", p.Listen, "started", start)
	return nil
}

// cleanup removes whatever a failed Create left behind, so that a later
// spawn starts from nothing (tenement's failed spawns left state behind).
func (m *Manager) cleanup(inst units.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = m.Remove(ctx, inst)
}

// Start starts the instance's service (a wake without a request).
func (m *Manager) Start(ctx context.Context, inst units.Instance) error {
	_ = m.conn.ResetFailedUnitContext(ctx, inst.ServiceUnit())
	return m.wait(ctx, inst.ServiceUnit(), "start", func(ch chan<- string) (int, error) {
		return m.conn.StartUnitContext(ctx, inst.ServiceUnit(), "replace", ch)
	})
}

// Sleep stops the instance's service; its socket keeps listening, so the next
// connection starts it again.
func (m *Manager) Sleep(ctx context.Context, inst units.Instance) error {
	return m.wait(ctx, inst.ServiceUnit(), "stop", func(ch chan<- string) (int, error) {
		return m.conn.StopUnitContext(ctx, inst.ServiceUnit(), "replace", ch)
	})
}

// Restart restarts the service (starting it if it sleeps or failed).
func (m *Manager) Restart(ctx context.Context, inst units.Instance) error {
	_ = m.conn.ResetFailedUnitContext(ctx, inst.ServiceUnit())
	return m.wait(ctx, inst.ServiceUnit(), "restart", func(ch chan<- string) (int, error) {
		return m.conn.RestartUnitContext(ctx, inst.ServiceUnit(), "replace", ch)
	})
}

// Remove stops the instance's slice, and with it both units (they require
// it), in one job; transient units then vanish from systemd. One job
// instead of a stop of the socket, of the service and of the slice makes a
// removal cheaper for systemd. The LegacySlice of an instance made before
// buckets is stopped too where it has a cgroup. When neither slice has a
// cgroup to show that the units are in it, or a slice does not stop, each
// unit is stopped on its own.
func (m *Manager) Remove(ctx context.Context, inst units.Instance) error {
	var errs []error
	var slices []string
	if sliceLoaded(inst) {
		slices = append(slices, inst.Slice())
	}
	if legacySliceLoaded(inst) {
		slices = append(slices, inst.LegacySlice())
	}
	err := errors.New("the instance's slice has no cgroup")
	if len(slices) > 0 {
		err = m.stopSlices(ctx, slices)
	}
	if err != nil {
		m.log.Debug("stopping the units one by one", "instance", inst.String(), "why", err)
		for _, u := range []string{inst.SocketUnit(), inst.ServiceUnit()} {
			err := m.wait(ctx, u, "stop", func(ch chan<- string) (int, error) {
				return m.calls().StopUnitContext(ctx, u, "replace", ch)
			})
			if err != nil && !isNoSuchUnit(err) {
				errs = append(errs, err)
			}
		}
	}
	for _, u := range []string{inst.SocketUnit(), inst.ServiceUnit()} {
		_ = m.calls().ResetFailedUnitContext(ctx, u) // a failed unit stays loaded until reset
	}
	if len(errs) == 0 {
		m.cache.forget(inst.SocketUnit(), inst.ServiceUnit())
	}
	return errors.Join(errs...)
}

func isNoSuchUnit(err error) bool {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name == "org.freedesktop.systemd1.NoSuchUnit"
	}
	return strings.Contains(err.Error(), "not loaded") || strings.Contains(err.Error(), "NoSuchUnit")
}

// Unit is the state of one of ten's units as listed by systemd.
type Unit struct {
	Instance    units.Instance
	Kind        string
	ActiveState string
	SubState    string
}

// List returns every loaded unit of ten (ListUnitsByPatterns tenement-*),
// in one D-Bus call, and makes the state cache (State) what it says.
func (m *Manager) List(ctx context.Context) ([]Unit, error) {
	out, err := m.list(ctx)
	if err == nil {
		m.cache.replace(out)
		for i, u := range out {
			if u.Kind == units.KindService {
				st := m.standbyView(u.Instance, UnitState{ActiveState: u.ActiveState, SubState: u.SubState})
				out[i].ActiveState, out[i].SubState = st.ActiveState, st.SubState
			}
		}
	}
	return out, err
}

func (m *Manager) list(ctx context.Context) ([]Unit, error) {
	st, err := m.conn.ListUnitsByPatternsContext(ctx, nil, units.Patterns)
	if err != nil {
		return nil, fmt.Errorf("list units %v: %w", units.Patterns, err)
	}
	var out []Unit
	for _, u := range st {
		inst, kind, ok := units.FromUnit(u.Name)
		if !ok || u.LoadState == "not-found" {
			continue
		}
		out = append(out, Unit{Instance: inst, Kind: kind, ActiveState: u.ActiveState, SubState: u.SubState})
	}
	return out, nil
}

// Info is what ten reads of an instance's service unit.
type Info struct {
	ActiveState   string
	SubState      string
	Result        string
	SocketState   string
	MainPID       uint32
	ActiveSince   time.Time
	InactiveSince time.Time
	// MemoryCurrent is the cgroup's memory in bytes (0 when unknown).
	MemoryCurrent uint64
	CPUUsageNSec  uint64
	NRestarts     uint32
	Environment   []string
	ControlGroup  string
}

const unknownU64 = ^uint64(0)

// ControlGroup reads the service's cgroup path ("" while it has none): one
// property, where Info reads them all (systemd writes out some three
// hundred for a GetAll of a service).
func (m *Manager) ControlGroup(ctx context.Context, inst units.Instance) (string, error) {
	p, err := m.conn.GetServicePropertyContext(ctx, inst.ServiceUnit(), "ControlGroup")
	if err != nil {
		return "", fmt.Errorf("read %s: %w", inst.ServiceUnit(), err)
	}
	cg, _ := p.Value.Value().(string)
	return cg, nil
}

// MainPID reads the PID of the service's main process (0 when it runs none).
func (m *Manager) MainPID(ctx context.Context, inst units.Instance) (int, error) {
	p, err := m.conn.GetServicePropertyContext(ctx, inst.ServiceUnit(), "MainPID")
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", inst.ServiceUnit(), err)
	}
	pid, _ := p.Value.Value().(uint32)
	return int(pid), nil
}

// NotifyAccess reads the service's NotifyAccess ("none", "main", "exec",
// "all"): who may send systemd notifications for it.
func (m *Manager) NotifyAccess(ctx context.Context, inst units.Instance) (string, error) {
	p, err := m.conn.GetServicePropertyContext(ctx, inst.ServiceUnit(), "NotifyAccess")
	if err != nil {
		return "", fmt.Errorf("read %s: %w", inst.ServiceUnit(), err)
	}
	v, _ := p.Value.Value().(string)
	return v, nil
}

// Status reads what a health check needs of the service: its active and sub
// state, result and restart count (the other fields of Info stay zero). Four
// property reads, where Info's GetAll also has systemd read the unit's
// cgroup and IP counters: a check runs at every start, while the app starts.
func (m *Manager) Status(ctx context.Context, inst units.Instance) (Info, error) {
	unit := inst.ServiceUnit()
	var in Info
	for _, r := range []struct {
		name string
		get  func(context.Context, string, string) (*sd.Property, error)
		dst  any
	}{
		{"ActiveState", m.conn.GetUnitPropertyContext, &in.ActiveState},
		{"SubState", m.conn.GetUnitPropertyContext, &in.SubState},
		{"Result", m.conn.GetServicePropertyContext, &in.Result},
		{"NRestarts", m.conn.GetServicePropertyContext, &in.NRestarts},
	} {
		p, err := r.get(ctx, unit, r.name)
		if err != nil {
			return in, fmt.Errorf("read %s: %w", unit, err)
		}
		if err := p.Value.Store(r.dst); err != nil {
			return in, fmt.Errorf("read %s %s: %w", unit, r.name, err)
		}
	}
	m.standbyInfo(inst, &in)
	return in, nil
}

// standbyInfo makes in what ten reports of a service on standby: asleep,
// with no main process of an app.
func (m *Manager) standbyInfo(inst units.Instance, in *Info) {
	st := m.standbyView(inst, UnitState{ActiveState: in.ActiveState, SubState: in.SubState})
	if st.SubState == StandbySubState {
		in.ActiveState, in.SubState, in.MainPID = st.ActiveState, st.SubState, 0
	}
}

// Info reads the service's and socket's state and resource use.
func (m *Manager) Info(ctx context.Context, inst units.Instance) (Info, error) {
	var in Info
	props, err := m.conn.GetAllPropertiesContext(ctx, inst.ServiceUnit())
	if err != nil {
		return in, fmt.Errorf("read %s: %w", inst.ServiceUnit(), err)
	}
	in.ActiveState, _ = props["ActiveState"].(string)
	in.SubState, _ = props["SubState"].(string)
	in.Result, _ = props["Result"].(string)
	in.MainPID, _ = props["MainPID"].(uint32)
	in.NRestarts, _ = props["NRestarts"].(uint32)
	in.Environment, _ = props["Environment"].([]string)
	in.ControlGroup, _ = props["ControlGroup"].(string)
	if v, ok := props["ActiveEnterTimestamp"].(uint64); ok && v > 0 {
		in.ActiveSince = time.UnixMicro(int64(v))
	}
	if v, ok := props["InactiveEnterTimestamp"].(uint64); ok && v > 0 {
		in.InactiveSince = time.UnixMicro(int64(v))
	}
	if v, ok := props["MemoryCurrent"].(uint64); ok && v != unknownU64 {
		in.MemoryCurrent = v
	}
	if v, ok := props["CPUUsageNSec"].(uint64); ok && v != unknownU64 {
		in.CPUUsageNSec = v
	} else if v, ok := cgroupCPU(in.ControlGroup); ok && in.ActiveState != "inactive" {
		in.CPUUsageNSec = v
	}
	sp, err := m.conn.GetUnitPropertyContext(ctx, inst.SocketUnit(), "ActiveState")
	if err == nil {
		in.SocketState, _ = sp.Value.Value().(string)
	}
	m.standbyInfo(inst, &in)
	return in, nil
}

// Usage reads the service's MemoryCurrent (bytes) and CPUUsageNSec in one
// call; 0 where systemd does not know them. Cheaper than Info for metrics.
func (m *Manager) Usage(ctx context.Context, inst units.Instance) (memory, cpuNSec uint64, err error) {
	props, err := m.conn.GetUnitTypePropertiesContext(ctx, inst.ServiceUnit(), "Service")
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", inst.ServiceUnit(), err)
	}
	if v, ok := props["MemoryCurrent"].(uint64); ok && v != unknownU64 {
		memory = v
	}
	if v, ok := props["CPUUsageNSec"].(uint64); ok && v != unknownU64 {
		cpuNSec = v
	} else if cg, _ := props["ControlGroup"].(string); cg != "" {
		cpuNSec, _ = cgroupCPU(cg)
	}
	return memory, cpuNSec, nil
}

// Environment reads the service's Environment= (one property, not all of
// them): what adopting an instance needs of it (PORT, TEN_LISTEN).
func (m *Manager) Environment(ctx context.Context, inst units.Instance) ([]string, error) {
	p, err := m.conn.GetServicePropertyContext(ctx, inst.ServiceUnit(), "Environment")
	if err != nil {
		return nil, fmt.Errorf("read %s Environment: %w", inst.ServiceUnit(), err)
	}
	env, _ := p.Value.Value().([]string)
	return env, nil
}

// SocketPath is the path of the unix socket the instance's socket unit
// listens on (the router's; an L4 service's TCP sockets are not paths).
func (m *Manager) SocketPath(ctx context.Context, inst units.Instance) (string, error) {
	p, err := m.conn.GetUnitTypePropertyContext(ctx, inst.SocketUnit(), "Socket", "Listen")
	if err != nil {
		return "", fmt.Errorf("read %s Listen: %w", inst.SocketUnit(), err)
	}
	listens, _ := p.Value.Value().([][]any)
	for _, l := range listens {
		if len(l) == 2 {
			if path, _ := l[1].(string); strings.HasPrefix(path, "/") {
				return path, nil
			}
		}
	}
	return "", fmt.Errorf("%s listens on no unix socket (%v)", inst.SocketUnit(), p.Value)
}

// Exists reports whether systemd has the instance's socket unit loaded.
func (m *Manager) Exists(ctx context.Context, inst units.Instance) (bool, error) {
	st, err := m.conn.ListUnitsByNamesContext(ctx, []string{inst.SocketUnit(), inst.ServiceUnit()})
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", inst.Base(), err)
	}
	for _, u := range st {
		if u.LoadState == "loaded" {
			return true, nil
		}
	}
	return false, nil
}

// Change is a state change of one of ten's service or socket units.
type Change struct {
	Instance    units.Instance
	Kind        string
	ActiveState string
	SubState    string
}

// Watch delivers state changes of ten's units until ctx ends. It uses
// systemd's PropertiesChanged signals, so nothing is polled.
//
// A change is never lost in silence: when a buffer on the way overflows
// (the signals' (see subscribe), or the channel Watch returns), Watch logs it at warn,
// counts it (DroppedEvents), and resynchronises: it lists every unit of
// ten's and delivers each one's present state as a Change.
//
// Watch may start after the caller listed (List) and made units (Create):
// once subscribed it lists every unit once more and first delivers the
// state of each one that the cache has otherwise (a change it made no
// signal for). So a caller creates thousands of units at start before it
// subscribes: while anyone is subscribed, systemd sends a signal for every
// change of every unit, which made creating them about twice as slow.
func (m *Manager) Watch(ctx context.Context) (<-chan Change, error) {
	raw := make(chan *sd.PropertiesUpdate, 1024)
	errs := make(chan error, 16)
	if err := m.subscribe(ctx, raw, errs); err != nil {
		return nil, fmt.Errorf("subscribe to systemd signals: %w", err)
	}
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	us, err := m.list(lctx)
	cancel()
	if err != nil {
		return nil, err
	}
	missed := m.cache.differ(us)
	m.cache.replace(us)
	out := make(chan Change, 1024)
	go func() {
		defer close(out)
		for _, u := range missed {
			select {
			case out <- Change{Instance: u.Instance, Kind: u.Kind, ActiveState: u.ActiveState, SubState: u.SubState}:
			case <-ctx.Done():
				return
			}
		}
		pump(ctx, raw, errs, out, m.list, m.cache, &m.dropped, m.log)
	}()
	return out, nil
}

// DroppedEvents counts the state changes Watch lost to a full buffer (and
// made up for by a resynchronisation).
func (m *Manager) DroppedEvents() uint64 { return m.dropped.Load() }

// pump turns signals into Changes and keeps the state cache. A full out,
// or go-systemd's report of its own full channel, marks a loss; once out
// has room again, pump lists the units (list) and sends each one's state.
// A signal lost before it reached pump leaves the cache stale too: pump
// then lists at once (once) to mend the cache, whether out has room or not.
func pump(ctx context.Context, raw <-chan *sd.PropertiesUpdate, errs <-chan error, out chan<- Change, list func(context.Context) ([]Unit, error), cache *stateCache, dropped *atomic.Uint64, log *slog.Logger) {
	resync, stale := false, false
	// sent is the state last sent of each unit that is not inactive: systemd
	// sends the Unit interface's properties again whenever any of them
	// changes (a job queued, a timestamp), and a state sent once is not sent
	// again. Inactive units leave it (so it holds the units that run, not
	// every unit ever seen); their repeats cost nothing downstream.
	sent := map[string]string{}
	lost := func(why string) {
		dropped.Add(1)
		if !resync {
			log.Warn("systemd state changes lost; resynchronising from a full listing", "why", why)
		}
		resync = true
	}
	for {
		if stale || (resync && len(out) <= cap(out)/2) {
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			us, err := list(lctx)
			cancel()
			if err != nil {
				log.Warn("resynchronise with systemd", "err", err)
			} else {
				cache.replace(us)
				stale = false
			}
			if err == nil && resync && len(out) <= cap(out)/2 {
				resync = false
				clear(sent)
				for _, u := range us {
					select {
					case out <- Change{Instance: u.Instance, Kind: u.Kind, ActiveState: u.ActiveState, SubState: u.SubState}:
					case <-ctx.Done():
						return
					}
				}
			}
		}
		var tick <-chan time.Time
		if resync {
			tick = time.After(100 * time.Millisecond) // look again for room in out
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case err := <-errs:
			if errors.Is(err, errSignalsLost) || strings.Contains(err.Error(), "channel is full") {
				lost(err.Error())
				stale = true
			} else {
				log.Debug("systemd signal", "err", err)
			}
		case u := <-raw:
			inst, kind, ok := units.FromUnit(u.UnitName)
			if !ok {
				continue
			}
			cache.apply(u.UnitName, u.Changed)
			c := Change{Instance: inst, Kind: kind}
			if v, ok := u.Changed["ActiveState"]; ok {
				c.ActiveState, _ = v.Value().(string)
			}
			if v, ok := u.Changed["SubState"]; ok {
				c.SubState, _ = v.Value().(string)
			}
			if c.ActiveState == "" && c.SubState == "" {
				continue
			}
			key := c.ActiveState + "/" + c.SubState
			if sent[u.UnitName] == key {
				continue
			}
			if c.ActiveState == "inactive" {
				delete(sent, u.UnitName)
			} else {
				sent[u.UnitName] = key
			}
			select {
			case out <- c:
			default:
				lost("ten's change buffer is full")
			}
		}
	}
}
