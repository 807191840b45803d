// Package fleetnode is one ten serve's part in a fleet ([fleet] in
// tenement.toml): it joins with a leased session, keeps a view of the fleet
// current, and reconciles this node with it — it claims and creates (through
// the server's Local) what is placed here, stops what is not, moves a lost
// node's movable instances, fences (stops every instance) before its lease
// can end, and joins again. It also answers the server's fleet-wide
// questions: where to spawn, how to stop, ps across nodes, and the router's
// not-here path (forward to the owner, or wait for a creation here).
package fleetnode

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

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/fleet"
	"github.com/tenhq/ten/ondemand"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router"
	rfleet "github.com/tenhq/ten/router/fleet"
	"github.com/tenhq/ten/strictjson"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

// Local is what the node asks of this server's instances.
type Local interface {
	// Spawn creates inst here; errors wrap registry.ErrExists,
	// registry.ErrBusy or registry.ErrUnknownService as the server's do.
	Spawn(ctx context.Context, inst units.Instance) error
	// Stop removes inst here (registry.ErrNotFound when it is not here).
	Stop(ctx context.Context, inst units.Instance) error
	// StopDraining is Stop after the requests in flight to inst finished
	// (for a few seconds at most), as a user's stop outside a fleet: for
	// an instance unplaced by `ten stop` or placed elsewhere. A fence
	// stops at once (Stop): another node may take the instance.
	StopDraining(ctx context.Context, inst units.Instance) error
	// Has reports whether inst runs here; Instances lists those that do.
	Has(inst units.Instance) bool
	Instances() []units.Instance
	// Routed reports whether the router has inst.
	Routed(inst units.Instance) bool
	// SetWeight changes the routing weight of an instance that runs here
	// (and saves it), as the server does outside a fleet.
	SetWeight(inst units.Instance, w int) error
	// Tokens is the API's token store (nil until the server has it), where
	// the fleet's token records are applied.
	Tokens() *auth.Store
}

// Options configure a node.
type Options struct {
	Config *config.Config
	Log    *slog.Logger
	// Local is this server's instances. It is used from the first join on:
	// a fence stops every instance Local lists.
	Local Local
	// OnStale is called once when an earlier session of this node's name is
	// still live (a ten that was killed): see StopStale.
	OnStale func()
}

// Node is this server's part in a fleet: its etcd client, its leased
// session (renewed after a fence), and the view of the fleet a watch keeps
// current. In fleet mode an instance runs here only while it is placed here
// and this node's session owns it.
type Node struct {
	cli   *clientv3.Client
	cfg   *config.Config
	log   *slog.Logger
	watch *fleet.Watcher
	local Local
	// peerAuth is the routers' peer token (PeerAuth), fixed at Start.
	peerAuth *rfleet.PeerAuth

	mu sync.Mutex // mu guards the following
	// sess is the live session, nil between a fence and the next join.
	sess *fleet.Session
	// busy marks instances with an ensure or drop in flight.
	busy map[string]bool
	// tokens are the token records last given to the auth store, weights
	// the weights last applied here from the fleet (shared.go).
	tokens  map[string][]byte
	weights map[string]int
	// apiProxy forwards API calls to the node that runs the instance
	// (api.go).
	apiProxy struct {
		once sync.Once
		p    *httputil.ReverseProxy
	}
}

// createTimeout bounds one creation, as the server's on-demand creations.
const createTimeout = ondemand.CreateTimeout

// joinWait bounds how long a starting node waits for an earlier session
// of its own name (a ten that was killed) to end.
func joinWait(f config.Fleet) time.Duration { return 2 * time.Duration(f.LeaseTTL) * time.Second }

// Start connects to etcd and joins the fleet. A node whose name a live
// session holds waits up to two lease TTLs for it to end (ten killed and
// restarted at once), then gives up. Such an earlier session never fenced:
// OnStale is called once, before the wait, to stop what it may still run
// here before its lease ends and other nodes take it over.
func Start(ctx context.Context, o Options) (*Node, error) {
	cfg, log, onStale := o.Config, o.Log, o.OnStale
	cli, err := fleet.Connect(cfg.Fleet)
	if err != nil {
		return nil, err
	}
	kctx, cancel := context.WithTimeout(ctx, joinWait(cfg.Fleet))
	key, err := fleet.PeerKey(kctx, cli)
	cancel()
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("node %s, etcd %s: %w", cfg.Fleet.Node, strings.Join(cfg.Fleet.EtcdEndpoints, ","), err)
	}
	n := &Node{cli: cli, cfg: cfg, log: log, watch: fleet.NewWatcher(cli, log), local: o.Local, busy: map[string]bool{}, peerAuth: rfleet.NewPeerAuth(key)}
	deadline := time.Now().Add(joinWait(cfg.Fleet))
	for {
		err = n.join(ctx)
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
	return n, nil
}

func (n *Node) join(ctx context.Context) error {
	sess, err := fleet.Start(ctx, n.cli, n.cfg, n.log, n.fenced)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.sess = sess
	n.mu.Unlock()
	return nil
}

// fenced is the session's Fence: it stops this node's instances and
// returns when they are stopped.
func (n *Node) fenced(reason string) {
	n.mu.Lock()
	n.sess = nil
	n.mu.Unlock()
	n.stopAll(reason)
}

// session is the live session, or nil.
func (n *Node) session() *fleet.Session {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sess
}

// Name is this node's name ([fleet] node).
func (n *Node) Name() string { return n.cfg.Fleet.Node }

// take marks inst busy; false when an action on it is in flight already.
func (n *Node) take(inst string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.busy[inst] {
		return false
	}
	n.busy[inst] = true
	return true
}

func (n *Node) done(inst string) {
	n.mu.Lock()
	delete(n.busy, inst)
	n.mu.Unlock()
}

// Run follows the fleet's state and acts on it until ctx ends: it
// creates what is placed here, stops what is not, moves a lost node's
// instances, and joins again after a fence. When ctx ends it stops this
// node's instances and leaves (another node may take them at once).
func (n *Node) Run(ctx context.Context) {
	go n.watch.Run(ctx)
	n.shareFileToken(ctx)
	for {
		changed := n.watch.Changed()
		sess := n.session()
		if sess == nil { // fenced
			n.rejoin(ctx)
			if ctx.Err() == nil {
				continue
			}
		}
		var ended <-chan struct{}
		if sess != nil {
			ended = sess.Done()
			if v, ok := n.watch.View(); ok {
				n.reconcile(ctx, sess, v)
			}
		}
		select {
		case <-ctx.Done():
			n.leave()
			return
		case <-changed:
		case <-ended:
			n.rejoin(ctx)
		case <-time.After(5 * time.Second): // retry what failed
		}
	}
}

// rejoin joins again after a fence, retrying every second.
func (n *Node) rejoin(ctx context.Context) {
	for ctx.Err() == nil && n.session() == nil {
		jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.join(jctx)
		cancel()
		if err == nil {
			n.log.Info("fleet: joined again after a fence", "node", n.Name())
			return
		}
		n.log.Warn("fleet: join again", "node", n.Name(), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// leave stops this node's instances, then ends the session, so that
// other nodes may take the instances at once.
func (n *Node) leave() {
	sess := n.session()
	n.stopAll("ten serve is stopping")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if sess != nil {
		if err := sess.Close(ctx); err != nil {
			n.log.Warn("fleet: leave", "err", err)
		}
	}
	n.cli.Close()
}

// LeaveEmpty ends the session of a node that never started an instance
// (the server could not be built).
func (n *Node) LeaveEmpty() {
	if sess := n.session(); sess != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = sess.Close(ctx)
		cancel()
	}
	n.cli.Close()
}

// stopAll removes every instance of this node (a fence): an instance
// being created meanwhile is removed once its creation ends.
func (n *Node) stopAll(reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n.log.Warn("fleet: stopping every instance of this node", "node", n.Name(), "reason", reason, "instances", len(n.local.Instances()))
	for ctx.Err() == nil {
		insts := n.local.Instances()
		if len(insts) == 0 {
			return
		}
		var wg sync.WaitGroup
		for _, inst := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := n.local.Stop(ctx, inst); err != nil && !errors.Is(err, registry.ErrNotFound) && !errors.Is(err, registry.ErrBusy) {
					n.log.Error("fleet: stop", "instance", inst.String(), "err", err)
				}
			}()
		}
		wg.Wait()
		time.Sleep(20 * time.Millisecond)
	}
}

// movable reports whether inst may move off a lost node.
func (n *Node) movable(inst string) bool {
	svc, _, ok := strings.Cut(inst, ":")
	c, known := n.cfg.Services[svc]
	return ok && known && c.MovesOnNodeLoss()
}

// reconcile brings this node in line with the view: instances placed
// here are claimed and created, instances not placed here (or owned by
// another node) are stopped, and a lost node's movable instances are
// placed on live nodes.
func (n *Node) reconcile(ctx context.Context, sess *fleet.Session, v fleet.View) {
	self := n.Name()
	n.applyShared(v)
	for name, p := range v.Placements {
		inst, err := units.ParseInstance(name)
		if err != nil || p.Node != self {
			continue
		}
		if !n.local.Has(inst) || v.Owners[name] != self {
			if n.take(name) {
				go func() { defer n.done(name); n.ensure(ctx, sess, inst) }()
			}
		}
	}
	for _, inst := range n.local.Instances() {
		name := inst.String()
		if p, ok := v.Placements[name]; ok && p.Node == self {
			continue
		}
		if n.take(name) {
			go func() { defer n.done(name); n.dropDraining(ctx, sess, inst, "no longer placed on this node") }()
		}
	}
	if _, live := v.Nodes[self]; !live {
		return // this node is not seen live: it moves nothing
	}
	for _, m := range fleet.PlanMoves(v, n.movable) {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		moved, err := fleet.Reassign(mctx, n.cli, m)
		cancel()
		switch {
		case err != nil:
			n.log.Warn("fleet: move", "instance", m.Instance, "err", err)
		case moved:
			n.log.Info("fleet: moved an instance off a lost node", "instance", m.Instance, "from", m.From.Node, "to", m.To)
		}
	}
}

// ensure claims inst for this node and creates it. When another node
// owns it, this node does not run it (and stops it if it does). A failed
// creation gives the claim back and removes the placement, as a failed
// spawn leaves nothing behind on a single server.
func (n *Node) ensure(ctx context.Context, sess *fleet.Session, inst units.Instance) {
	name := inst.String()
	// A claim that hangs (its etcd member cut off) is tried again by the
	// next reconcile; it must not hold the instance busy for long.
	clctx, clcancel := context.WithTimeout(ctx, 5*time.Second)
	owner, err := sess.Claim(clctx, name)
	clcancel()
	cctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	if err != nil {
		n.log.Warn("fleet: claim", "instance", name, "err", err)
		return
	}
	if owner != n.Name() {
		if n.local.Has(inst) {
			n.drop(ctx, sess, inst, "node "+owner+" owns it")
		}
		return
	}
	if n.local.Has(inst) {
		return
	}
	err = n.local.Spawn(cctx, inst)
	if err == nil {
		// The fleet's weight for it, set while it was elsewhere or not
		// created yet (a weight applied to an earlier instance of the
		// same name no longer counts).
		n.forgetWeight(name)
		if v, ok := n.watch.View(); ok {
			n.applyShared(v)
		}
	}
	if errors.Is(err, registry.ErrExists) || errors.Is(err, registry.ErrBusy) {
		return
	}
	if err != nil {
		n.log.Error("fleet: create an instance placed on this node", "instance", name, "err", err)
		_ = sess.Release(cctx, name)
		if _, err := fleet.Unplace(cctx, n.cli, name); err != nil {
			n.log.Warn("fleet: unplace", "instance", name, "err", err)
		}
		return
	}
	if why := sess.Fenced(); why != "" { // fenced while it was created
		n.drop(ctx, sess, inst, "fenced: "+why)
		return
	}
	n.log.Info("fleet: created an instance placed on this node", "instance", name, "node", n.Name())
}

// drop stops inst here and gives up this session's claim on it.
func (n *Node) drop(ctx context.Context, sess *fleet.Session, inst units.Instance, why string) {
	n.dropWith(ctx, sess, inst, why, n.local.Stop)
}

// dropDraining is drop letting the requests in flight finish first.
func (n *Node) dropDraining(ctx context.Context, sess *fleet.Session, inst units.Instance, why string) {
	n.dropWith(ctx, sess, inst, why, n.local.StopDraining)
}

func (n *Node) dropWith(ctx context.Context, sess *fleet.Session, inst units.Instance, why string, stop func(context.Context, units.Instance) error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := stop(dctx, inst); err != nil && !errors.Is(err, registry.ErrNotFound) {
		n.log.Warn("fleet: stop", "instance", inst.String(), "why", why, "err", err)
		return
	}
	n.log.Info("fleet: stopped an instance here", "instance", inst.String(), "why", why)
	if err := sess.Release(dctx, inst.String()); err != nil {
		n.log.Warn("fleet: release", "instance", inst.String(), "err", err)
	}
}

// PlaceLocal places the instances systemd already had at start on
// this node (an instance placed elsewhere meanwhile is stopped by the
// first reconcile), and the declared [instances] wherever placement picks.
func (n *Node) PlaceLocal(ctx context.Context) error {
	var errs []error
	for _, inst := range n.local.Instances() {
		if _, err := fleet.PlaceInstance(ctx, n.cli, inst.String(), n.memOf(inst), n.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, svc := range n.cfg.ServiceNames() {
		for _, id := range n.cfg.Instances[svc] {
			inst := units.Instance{Service: svc, ID: id}
			if _, err := fleet.PlaceInstance(ctx, n.cli, inst.String(), n.memOf(inst), ""); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (n *Node) memOf(inst units.Instance) int {
	if svc, ok := n.cfg.Services[inst.Service]; ok {
		return svc.MemoryLimitMB
	}
	return 0
}

// Spawn is the server's spawn in fleet mode: it places inst (on want, or by free
// capacity) and waits until the placed node has created it (this node) or
// claimed it (another node). It returns the node.
func (n *Node) Spawn(ctx context.Context, inst units.Instance, want string) (string, error) {
	if _, ok := n.cfg.Services[inst.Service]; !ok {
		return "", fmt.Errorf("spawn %s: %w %q", inst, registry.ErrUnknownService, inst.Service)
	}
	name := inst.String()
	if p, placed, _, _, _ := n.watch.Lookup(name); placed {
		return "", fmt.Errorf("spawn %s: %w: placed on node %s (stop it first, or restart it)", inst, registry.ErrExists, p.Node)
	}
	node, err := fleet.PlaceInstance(ctx, n.cli, name, n.memOf(inst), want)
	if err != nil {
		if errors.Is(err, fleet.ErrNoCapacity) || strings.Contains(err.Error(), "not a live node") {
			return "", fmt.Errorf("%w: %v", strictjson.ErrBadInput, err)
		}
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	seen := false // the watch has shown the placement
	for {
		changed := n.watch.Changed()
		p, placed, owner, _, _ := n.watch.Lookup(name)
		seen = seen || placed
		if seen && !placed {
			return "", fmt.Errorf("spawn %s: node %s could not create it (its log says why)", inst, node)
		}
		if placed && owner == p.Node && (p.Node != n.Name() || n.local.Has(inst)) {
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

// Stop is the server's stop in fleet mode: it removes the placement and waits
// until the node that ran the instance has stopped it and let it go.
func (n *Node) Stop(ctx context.Context, inst units.Instance) error {
	name := inst.String()
	existed, err := fleet.Unplace(ctx, n.cli, name)
	if err != nil {
		return err
	}
	if !existed {
		if n.local.Has(inst) {
			return n.local.StopDraining(ctx, inst)
		}
		return fmt.Errorf("stop %s: %w", inst, registry.ErrNotFound)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		changed := n.watch.Changed()
		_, placed, owner, _, _ := n.watch.Lookup(name)
		if !placed && owner == "" && !n.local.Has(inst) {
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

// Rows adds to this node's rows a row for every instance placed on
// another node, and names the node in each.
func (n *Node) Rows(rows []apitype.Row) []apitype.Row {
	here := map[string]bool{}
	for i := range rows {
		rows[i].Node = n.Name()
		here[rows[i].Instance] = true
	}
	v, _ := n.watch.View()
	for name, p := range v.Placements {
		if here[name] {
			continue
		}
		r := apitype.Row{Instance: name, ID: name, Node: p.Node, State: apitype.StateRemote, Weight: 100}
		if w, ok := v.Weights[name]; ok {
			r.Weight = w
		}
		switch owner, live := v.Owners[name], v.Nodes[p.Node].Node != ""; {
		case v.Failed[name] != "":
			r.State, r.Health, r.Detail = apitype.StateFailed, apitype.HealthFailed, v.Failed[name]
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

// Route is the router's not-here path in fleet mode: an instance
// another live node runs is forwarded there; one placed here (being
// created) is waited for; a new id is placed like a spawn, within the
// on-demand bounds. ok is false when the fleet knows nothing of inst.
func (n *Node) Route(inst units.Instance) (err error, ok bool) {
	p, placed, _, node, live := n.watch.Lookup(inst.String())
	if !placed {
		return nil, false
	}
	if p.Node == n.Name() {
		return n.waitRouted(inst), true
	}
	if err := n.failed(inst, p.Node); err != nil {
		return err, true
	}
	if !live || node.Addr == "" {
		return &router.Refused{Status: http.StatusServiceUnavailable, Msg: fmt.Sprintf("instance %s is placed on node %s, which is not live; it answers again when that node is back or the instance has moved", inst, p.Node)}, true
	}
	// The owner answers within the instance's timeouts, or says it did not.
	timeout := 40 * time.Second
	if svc, ok := n.cfg.Services[inst.Service]; ok {
		timeout = svc.StartupTimeoutDuration() + svc.RequestTimeoutDuration()
	}
	return &router.Forward{Node: p.Node, Addr: node.Addr, Timeout: timeout}, true
}

// waitRouted waits until the router has inst (its creation, under way on
// this node, has ended).
func (n *Node) waitRouted(inst units.Instance) error {
	for deadline := time.Now().Add(createTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n.local.Routed(inst) {
			return nil
		}
		if _, placed, _, _, _ := n.watch.Lookup(inst.String()); !placed {
			break
		}
	}
	return &router.Refused{Status: http.StatusServiceUnavailable, Msg: fmt.Sprintf("instance %s is placed on this node but was not created (see `ten ps`, journalctl)", inst)}
}

// StopStale removes every instance's units from systemd: a ten killed
// while it was a fleet node left them running with no fence, and its lease
// is about to end, after which other nodes may start them.
func StopStale(ctx context.Context, log *slog.Logger) {
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

// PeerAuth is the token this node's router shows other nodes' routers on
// the requests it forwards, and takes from theirs (router.Options.FleetAuth).
func (n *Node) PeerAuth() *rfleet.PeerAuth { return n.peerAuth }

// IsPeer reports whether host is a live node's address (the router's
// FleetPeer: a peer router's forwarded request).
func (n *Node) IsPeer(host string) bool { return n.watch.IsNodeHost(host) }
