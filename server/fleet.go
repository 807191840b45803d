package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/fleet"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// fleetNode is this server's part in a fleet ([fleet] in the config): its
// etcd client, its leased session (renewed after a fence), and the view of
// the fleet a watch keeps current. In fleet mode an instance runs here only
// while it is placed here and this node's session owns it.
type fleetNode struct {
	cli   *clientv3.Client
	cfg   *config.Config
	log   *slog.Logger
	watch *fleet.Watcher

	mu sync.Mutex // mu guards the following
	// sess is the live session, nil between a fence and the next join.
	sess *fleet.Session
	// onFence stops this node's instances; nil until the server is built.
	onFence func(reason string)
	// busy marks instances with an ensure or drop in flight.
	busy map[string]bool
	// tokens are the token records last given to the auth store, weights
	// the weights last applied here from the fleet (fleet_shared.go).
	tokens  map[string][]byte
	weights map[string]int
	// apiProxy forwards API calls to the node that runs the instance
	// (fleet_api.go).
	apiProxy struct {
		once sync.Once
		p    *httputil.ReverseProxy
	}
}

// joinWait bounds how long a starting node waits for an earlier session
// of its own name (a ten that was killed) to end.
func joinWait(f config.Fleet) time.Duration { return 2 * time.Duration(f.LeaseTTL) * time.Second }

// startFleet connects to etcd and joins the fleet. A node whose name a
// live session holds waits up to two lease TTLs for it to end (ten killed
// and restarted at once), then gives up. Such an earlier session never
// fenced: onStale is called once, before the wait, to stop what it may
// still run here before its lease ends and other nodes take it over.
func startFleet(ctx context.Context, cfg *config.Config, log *slog.Logger, onStale func()) (*fleetNode, error) {
	cli, err := fleet.Connect(cfg.Fleet)
	if err != nil {
		return nil, err
	}
	f := &fleetNode{cli: cli, cfg: cfg, log: log, watch: fleet.NewWatcher(cli, log), busy: map[string]bool{}}
	deadline := time.Now().Add(joinWait(cfg.Fleet))
	for {
		err = f.join(ctx)
		if err == nil || !errors.Is(err, fleet.ErrNodeLive) || time.Now().After(deadline) {
			break
		}
		if onStale != nil {
			onStale()
			onStale = nil
		}
		log.Info("fleet: an earlier session of this node is still live; waiting for its lease to end", "node", cfg.Fleet.Node)
		select {
		case <-ctx.Done():
			cli.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		cli.Close()
		return nil, err
	}
	log.Info("fleet: joined", "node", cfg.Fleet.Node, "etcd", cfg.Fleet.EtcdEndpoints, "lease_ttl", cfg.Fleet.LeaseTTL)
	return f, nil
}

func (f *fleetNode) join(ctx context.Context) error {
	sess, err := fleet.Start(ctx, f.cli, f.cfg, f.log, f.fenced)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.sess = sess
	f.mu.Unlock()
	return nil
}

// fenced is the session's Fence: it stops this node's instances and
// returns when they are stopped.
func (f *fleetNode) fenced(reason string) {
	f.mu.Lock()
	f.sess = nil
	stop := f.onFence
	f.mu.Unlock()
	if stop != nil {
		stop(reason)
	}
}

// session is the live session, or nil.
func (f *fleetNode) session() *fleet.Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sess
}

func (f *fleetNode) node() string { return f.cfg.Fleet.Node }

// take marks inst busy; false when an action on it is in flight already.
func (f *fleetNode) take(inst string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.busy[inst] {
		return false
	}
	f.busy[inst] = true
	return true
}

func (f *fleetNode) done(inst string) {
	f.mu.Lock()
	delete(f.busy, inst)
	f.mu.Unlock()
}

// runFleet follows the fleet's state and acts on it until ctx ends: it
// creates what is placed here, stops what is not, moves a lost node's
// instances, and joins again after a fence. When ctx ends it stops this
// node's instances and leaves (another node may take them at once).
func (s *Server) runFleet(ctx context.Context) {
	f := s.fleet
	go f.watch.Run(ctx)
	s.fleetShareFileToken(ctx)
	for {
		changed := f.watch.Changed()
		sess := f.session()
		if sess == nil { // fenced
			s.fleetRejoin(ctx)
			if ctx.Err() == nil {
				continue
			}
		}
		var ended <-chan struct{}
		if sess != nil {
			ended = sess.Done()
			if v, ok := f.watch.View(); ok {
				s.fleetReconcile(ctx, sess, v)
			}
		}
		select {
		case <-ctx.Done():
			s.fleetLeave()
			return
		case <-changed:
		case <-ended:
			s.fleetRejoin(ctx)
		case <-time.After(5 * time.Second): // retry what failed
		}
	}
}

// fleetRejoin joins again after a fence, retrying every second.
func (s *Server) fleetRejoin(ctx context.Context) {
	f := s.fleet
	for ctx.Err() == nil && f.session() == nil {
		jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f.join(jctx)
		cancel()
		if err == nil {
			s.log.Info("fleet: joined again after a fence", "node", f.node())
			return
		}
		s.log.Warn("fleet: join again", "node", f.node(), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// fleetLeave stops this node's instances, then ends the session, so that
// other nodes may take the instances at once.
func (s *Server) fleetLeave() {
	f := s.fleet
	sess := f.session()
	s.fleetStopAll("ten serve is stopping")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if sess != nil {
		if err := sess.Close(ctx); err != nil {
			s.log.Warn("fleet: leave", "err", err)
		}
	}
	f.cli.Close()
}

// leaveEmpty ends the session of a node that never started an instance
// (the server could not be built).
func (f *fleetNode) leaveEmpty() {
	if sess := f.session(); sess != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = sess.Close(ctx)
		cancel()
	}
	f.cli.Close()
}

// fleetStopAll removes every instance of this node (a fence): an instance
// being created meanwhile is removed once its creation ends.
func (s *Server) fleetStopAll(reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.log.Warn("fleet: stopping every instance of this node", "node", s.fleet.node(), "reason", reason, "instances", s.reg.Len())
	for ctx.Err() == nil {
		insts := s.reg.Instances()
		if len(insts) == 0 {
			return
		}
		var wg sync.WaitGroup
		for _, inst := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Stop(ctx, inst); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrBusy) {
					s.log.Error("fleet: stop", "instance", inst.String(), "err", err)
				}
			}()
		}
		wg.Wait()
		time.Sleep(20 * time.Millisecond)
	}
}

// movable reports whether inst may move off a lost node.
func (s *Server) movable(inst string) bool {
	svc, _, ok := strings.Cut(inst, ":")
	c, known := s.cfg.Services[svc]
	return ok && known && c.MovesOnNodeLoss()
}

// fleetReconcile brings this node in line with the view: instances placed
// here are claimed and created, instances not placed here (or owned by
// another node) are stopped, and a lost node's movable instances are
// placed on live nodes.
func (s *Server) fleetReconcile(ctx context.Context, sess *fleet.Session, v fleet.View) {
	f := s.fleet
	self := f.node()
	s.fleetApplyShared(v)
	for name, p := range v.Placements {
		inst, err := units.ParseInstance(name)
		if err != nil || p.Node != self {
			continue
		}
		if !s.reg.Has(inst) || v.Owners[name] != self {
			if f.take(name) {
				go func() { defer f.done(name); s.fleetEnsure(ctx, sess, inst) }()
			}
		}
	}
	for _, inst := range s.reg.Instances() {
		name := inst.String()
		if p, ok := v.Placements[name]; ok && p.Node == self {
			continue
		}
		if f.take(name) {
			go func() { defer f.done(name); s.fleetDrop(ctx, sess, inst, "no longer placed on this node") }()
		}
	}
	if _, live := v.Nodes[self]; !live {
		return // this node is not seen live: it moves nothing
	}
	for _, m := range fleet.PlanMoves(v, s.movable) {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		moved, err := fleet.Reassign(mctx, f.cli, m)
		cancel()
		switch {
		case err != nil:
			s.log.Warn("fleet: move", "instance", m.Instance, "err", err)
		case moved:
			s.log.Info("fleet: moved an instance off a lost node", "instance", m.Instance, "from", m.From.Node, "to", m.To)
		}
	}
}

// fleetEnsure claims inst for this node and creates it. When another node
// owns it, this node does not run it (and stops it if it does). A failed
// creation gives the claim back and removes the placement, as a failed
// spawn leaves nothing behind on a single server.
func (s *Server) fleetEnsure(ctx context.Context, sess *fleet.Session, inst units.Instance) {
	f := s.fleet
	name := inst.String()
	// A claim that hangs (its etcd member cut off) is tried again by the
	// next reconcile; it must not hold the instance busy for long.
	clctx, clcancel := context.WithTimeout(ctx, 5*time.Second)
	owner, err := sess.Claim(clctx, name)
	clcancel()
	cctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	if err != nil {
		s.log.Warn("fleet: claim", "instance", name, "err", err)
		return
	}
	if owner != f.node() {
		if s.reg.Has(inst) {
			s.fleetDrop(ctx, sess, inst, "node "+owner+" owns it")
		}
		return
	}
	if s.reg.Has(inst) {
		return
	}
	err = s.Spawn(cctx, inst)
	if err == nil {
		// The fleet's weight for it, set while it was elsewhere or not
		// created yet (a weight applied to an earlier instance of the
		// same name no longer counts).
		f.forgetWeight(name)
		if v, ok := f.watch.View(); ok {
			s.fleetApplyShared(v)
		}
	}
	if errors.Is(err, ErrExists) || errors.Is(err, ErrBusy) {
		return
	}
	if err != nil {
		s.log.Error("fleet: create an instance placed on this node", "instance", name, "err", err)
		_ = sess.Release(cctx, name)
		if _, err := fleet.Unplace(cctx, f.cli, name); err != nil {
			s.log.Warn("fleet: unplace", "instance", name, "err", err)
		}
		return
	}
	if why := sess.Fenced(); why != "" { // fenced while it was created
		s.fleetDrop(ctx, sess, inst, "fenced: "+why)
		return
	}
	s.log.Info("fleet: created an instance placed on this node", "instance", name, "node", f.node())
}

// fleetDrop stops inst here and gives up this session's claim on it.
func (s *Server) fleetDrop(ctx context.Context, sess *fleet.Session, inst units.Instance, why string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := s.Stop(dctx, inst); err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Warn("fleet: stop", "instance", inst.String(), "why", why, "err", err)
		return
	}
	s.log.Info("fleet: stopped an instance here", "instance", inst.String(), "why", why)
	if err := sess.Release(dctx, inst.String()); err != nil {
		s.log.Warn("fleet: release", "instance", inst.String(), "err", err)
	}
}

// fleetPlaceLocal places the instances systemd already had at start on
// this node (an instance placed elsewhere meanwhile is stopped by the
// first reconcile), and the declared [instances] wherever placement picks.
func (s *Server) fleetPlaceLocal(ctx context.Context) error {
	var errs []error
	for _, inst := range s.reg.Instances() {
		if _, err := fleet.PlaceInstance(ctx, s.fleet.cli, inst.String(), s.memOf(inst), s.fleet.node()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, svc := range s.cfg.ServiceNames() {
		for _, id := range s.cfg.Instances[svc] {
			inst := units.Instance{Service: svc, ID: id}
			if _, err := fleet.PlaceInstance(ctx, s.fleet.cli, inst.String(), s.memOf(inst), ""); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Server) memOf(inst units.Instance) int {
	if svc, ok := s.cfg.Services[inst.Service]; ok {
		return svc.MemoryLimitMB
	}
	return 0
}

// fleetSpawn is Spawn in fleet mode: it places inst (on want, or by free
// capacity) and waits until the placed node has created it (this node) or
// claimed it (another node). It returns the node.
func (s *Server) fleetSpawn(ctx context.Context, inst units.Instance, want string) (string, error) {
	if _, ok := s.cfg.Services[inst.Service]; !ok {
		return "", fmt.Errorf("spawn %s: %w %q", inst, ErrUnknownService, inst.Service)
	}
	f := s.fleet
	name := inst.String()
	if p, placed, _, _, _ := f.watch.Lookup(name); placed {
		return "", fmt.Errorf("spawn %s: %w: placed on node %s (stop it first, or restart it)", inst, ErrExists, p.Node)
	}
	node, err := fleet.PlaceInstance(ctx, f.cli, name, s.memOf(inst), want)
	if err != nil {
		if errors.Is(err, fleet.ErrNoCapacity) || strings.Contains(err.Error(), "not a live node") {
			return "", fmt.Errorf("%w: %v", ErrBadInput, err)
		}
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	seen := false // the watch has shown the placement
	for {
		changed := f.watch.Changed()
		p, placed, owner, _, _ := f.watch.Lookup(name)
		seen = seen || placed
		if seen && !placed {
			return "", fmt.Errorf("spawn %s: node %s could not create it (its log says why)", inst, node)
		}
		if placed && owner == p.Node && (p.Node != f.node() || s.reg.Has(inst)) {
			return p.Node, nil
		}
		select {
		case <-wctx.Done():
			return "", fmt.Errorf("spawn %s: placed on node %s, which has not started it within %s", inst, node, createTimeout)
		case <-changed:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// fleetStop is Stop in fleet mode: it removes the placement and waits
// until the node that ran the instance has stopped it and let it go.
func (s *Server) fleetStop(ctx context.Context, inst units.Instance) error {
	f := s.fleet
	name := inst.String()
	existed, err := fleet.Unplace(ctx, f.cli, name)
	if err != nil {
		return err
	}
	if !existed {
		if s.reg.Has(inst) {
			return s.Stop(ctx, inst)
		}
		return fmt.Errorf("stop %s: %w", inst, ErrNotFound)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		changed := f.watch.Changed()
		_, placed, owner, _, _ := f.watch.Lookup(name)
		if !placed && owner == "" && !s.reg.Has(inst) {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("stop %s: unplaced, but node %s still holds it after a minute", inst, owner)
		case <-changed:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// fleetRows adds to this node's rows a row for every instance placed on
// another node, and names the node in each.
func (s *Server) fleetRows(rows []Row) []Row {
	f := s.fleet
	here := map[string]bool{}
	for i := range rows {
		rows[i].Node = f.node()
		here[rows[i].Instance] = true
	}
	v, _ := f.watch.View()
	for name, p := range v.Placements {
		if here[name] {
			continue
		}
		r := Row{Instance: name, ID: name, Node: p.Node, State: StateRemote, Weight: 100}
		if w, ok := v.Weights[name]; ok {
			r.Weight = w
		}
		switch owner, live := v.Owners[name], v.Nodes[p.Node].Node != ""; {
		case v.Failed[name] != "":
			r.State, r.Health, r.Detail = StateFailed, HealthFailed, v.Failed[name]
		case !live:
			r.Detail = "node " + p.Node + " is not live"
		case owner == "":
			r.Detail = "not started yet"
		case owner != p.Node:
			r.Detail = "moving: still held by node " + owner
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Instance < rows[j].Instance })
	return rows
}

// fleetRoute is the router's not-here path in fleet mode: an instance
// another live node runs is forwarded there; one placed here (being
// created) is waited for; a new id is placed like a spawn, within the
// on-demand bounds. ok is false when the fleet knows nothing of inst.
func (s *Server) fleetRoute(inst units.Instance) (err error, ok bool) {
	f := s.fleet
	p, placed, _, node, live := f.watch.Lookup(inst.String())
	if !placed {
		return nil, false
	}
	if p.Node == f.node() {
		return s.waitRouted(inst), true
	}
	if err := s.fleetFailed(inst, p.Node); err != nil {
		return err, true
	}
	if !live || node.Addr == "" {
		return &router.Refused{Status: http.StatusServiceUnavailable, Msg: fmt.Sprintf("instance %s is placed on node %s, which is not live; it answers again when that node is back or the instance has moved", inst, p.Node)}, true
	}
	// The owner answers within the instance's timeouts, or says it did not.
	timeout := 40 * time.Second
	if svc, ok := s.cfg.Services[inst.Service]; ok {
		timeout = svc.StartupTimeoutDuration() + svc.RequestTimeoutDuration()
	}
	return &router.Forward{Node: p.Node, Addr: node.Addr, Timeout: timeout}, true
}

// waitRouted waits until the router has inst (its creation, under way on
// this node, has ended).
func (s *Server) waitRouted(inst units.Instance) error {
	for deadline := time.Now().Add(createTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s.routed(inst) {
			return nil
		}
		if _, placed, _, _, _ := s.fleet.watch.Lookup(inst.String()); !placed {
			break
		}
	}
	return &router.Refused{Status: http.StatusServiceUnavailable, Msg: fmt.Sprintf("instance %s is placed on this node but was not created (see `ten ps`, journalctl)", inst)}
}

// stopStale removes every instance's units from systemd: a ten killed
// while it was a fleet node left them running with no fence, and its lease
// is about to end, after which other nodes may start them.
func stopStale(ctx context.Context, log *slog.Logger) {
	sdm, err := systemd.Connect(ctx, log)
	if err != nil {
		log.Error("fleet: an earlier session of this node never fenced, and systemd cannot be reached to stop its instances", "err", err)
		return
	}
	defer sdm.Close()
	list, err := sdm.List(ctx)
	if err != nil {
		log.Error("fleet: list the instances an earlier session left", "err", err)
		return
	}
	seen := map[units.Instance]bool{}
	for _, u := range list {
		if seen[u.Instance] {
			continue
		}
		seen[u.Instance] = true
		log.Warn("fleet: stopping an instance an earlier session of this node left running (it never fenced)", "instance", u.Instance.String())
		if err := sdm.Remove(ctx, u.Instance); err != nil {
			log.Error("fleet: stop", "instance", u.Instance.String(), "err", err)
		}
	}
}
