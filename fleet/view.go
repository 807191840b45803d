package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Placed is a placement with the revision it was last written at, which a
// move compares so that only one node moves an instance.
type Placed struct {
	Placement
	ModRev int64
}

// View is the fleet as one node sees it: live nodes, placements, owners.
type View struct {
	Rev        int64
	Nodes      map[string]NodeInfo
	Placements map[string]Placed
	Owners     map[string]string
	// Weights are the routing weights set in the fleet (an instance
	// without one has weight 100).
	Weights map[string]int
	// Failed are the failed marks: instance → reason.
	Failed map[string]string
	// Tokens are the API tokens' stored records (token id → record), as
	// auth.Store.SetShared takes them.
	Tokens map[string][]byte
}

func newView() View {
	return View{Nodes: map[string]NodeInfo{}, Placements: map[string]Placed{}, Owners: map[string]string{},
		Weights: map[string]int{}, Failed: map[string]string{}, Tokens: map[string][]byte{}}
}

func (v View) clone() View {
	return View{Rev: v.Rev, Nodes: maps.Clone(v.Nodes), Placements: maps.Clone(v.Placements), Owners: maps.Clone(v.Owners),
		Weights: maps.Clone(v.Weights), Failed: maps.Clone(v.Failed), Tokens: maps.Clone(v.Tokens)}
}

// apply records one key's new value (put) or absence (del).
func (v *View) apply(key string, val []byte, modRev int64, del bool) {
	switch {
	case strings.HasPrefix(key, nodesDir):
		name := strings.TrimPrefix(key, nodesDir)
		if del {
			delete(v.Nodes, name)
			return
		}
		var n NodeInfo
		if json.Unmarshal(val, &n) == nil {
			v.Nodes[name] = n
		}
	case strings.HasPrefix(key, placementDir):
		inst, ok := InstanceFromKey(key)
		if !ok {
			return
		}
		if del {
			delete(v.Placements, inst)
			return
		}
		var p Placement
		if json.Unmarshal(val, &p) == nil {
			v.Placements[inst] = Placed{Placement: p, ModRev: modRev}
		}
	case strings.HasPrefix(key, ownerDir):
		inst, ok := InstanceFromKey(key)
		if !ok {
			return
		}
		if del {
			delete(v.Owners, inst)
			return
		}
		v.Owners[inst] = string(val)
	case strings.HasPrefix(key, weightsDir):
		inst, ok := InstanceFromKey(key)
		if !ok {
			return
		}
		w, err := ParseWeight(val)
		if del || err != nil {
			delete(v.Weights, inst)
			return
		}
		v.Weights[inst] = w
	case strings.HasPrefix(key, failedDir):
		inst, ok := InstanceFromKey(key)
		if !ok {
			return
		}
		if del {
			delete(v.Failed, inst)
			return
		}
		v.Failed[inst] = boundReason(string(val))
	case strings.HasPrefix(key, tokensDir):
		id := strings.TrimPrefix(key, tokensDir)
		if del || ValidTokenID(id) != nil || len(val) > maxTokenRecord {
			delete(v.Tokens, id)
			return
		}
		v.Tokens[id] = val
	}
}

// Watcher keeps a View current from etcd: a full read, then a watch from
// the revision after it; a broken or compacted watch reads again.
type Watcher struct {
	cli *clientv3.Client
	log *slog.Logger

	mu      sync.Mutex // mu guards the following
	v       View
	loaded  bool
	changed chan struct{}
	// svc caches ServiceInstances for the view of revision svcRev.
	svc    map[string][]ServiceInstance
	svcRev int64
}

// NewWatcher returns a watcher; Run fills and follows it.
func NewWatcher(cli *clientv3.Client, log *slog.Logger) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{cli: cli, log: log, v: newView(), changed: make(chan struct{})}
}

// View returns a copy of the current view and whether it has been read
// from etcd at least once.
func (w *Watcher) View() (View, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.v.clone(), w.loaded
}

// Lookup returns an instance's placement, its owner ("" for none) and the
// placed node's record (ok false when that node is not live).
func (w *Watcher) Lookup(inst string) (p Placed, placed bool, owner string, node NodeInfo, live bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, placed = w.v.Placements[inst]
	owner = w.v.Owners[inst]
	if placed {
		node, live = w.v.Nodes[p.Node]
	}
	return
}

// Shared returns an instance's weight in the fleet (100 when none is set)
// and its failed mark ("" when none).
func (w *Watcher) Shared(inst string) (weight int, failed string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	weight, ok := w.v.Weights[inst]
	if !ok {
		weight = 100
	}
	return weight, w.v.Failed[inst]
}

// Changed returns a channel closed at the next change of the view.
func (w *Watcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

func (w *Watcher) notify() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// Run follows etcd until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	for ctx.Err() == nil {
		rev, err := w.load(ctx)
		if err != nil {
			w.log.Warn("fleet: read the fleet's state", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		w.follow(ctx, rev)
	}
}

// load reads every key under Prefix at one revision.
func (w *Watcher) load(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := w.cli.Get(rctx, Prefix, clientv3.WithPrefix(), clientv3.WithLimit(3*maxListed))
	if err != nil {
		return 0, fmt.Errorf("fleet: list %s: %w", Prefix, err)
	}
	v := newView()
	v.Rev = r.Header.Revision
	for _, kv := range r.Kvs {
		v.apply(string(kv.Key), kv.Value, kv.ModRevision, false)
	}
	w.mu.Lock()
	w.v, w.loaded = v, true
	w.notify()
	w.mu.Unlock()
	return v.Rev, nil
}

// follow applies watch events from rev+1 until the watch ends.
func (w *Watcher) follow(ctx context.Context, rev int64) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range w.cli.Watch(wctx, Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := resp.Err(); err != nil {
			w.log.Warn("fleet: watch", "err", err)
			return
		}
		w.mu.Lock()
		for _, ev := range resp.Events {
			w.v.apply(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision, ev.Type == mvccpb.DELETE)
		}
		w.v.Rev = resp.Header.Revision
		w.notify()
		w.mu.Unlock()
	}
}

// IsNodeHost reports whether ip is the host of a live node's addr.
func (w *Watcher) IsNodeHost(ip string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.v.Nodes {
		if h, _, err := net.SplitHostPort(n.Addr); err == nil && h == ip {
			return true
		}
	}
	return false
}
