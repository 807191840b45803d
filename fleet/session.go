package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// NodeInfo is a node's record under /ten/fleet/nodes/<node>.
type NodeInfo struct {
	Node string `json:"node"`
	// Addr is where other nodes reach this node's router (host:port).
	Addr     string   `json:"addr,omitempty"`
	Capacity Capacity `json:"capacity"`
	// Started is when the session began (RFC 3339, UTC).
	Started string `json:"started"`
}

// ErrFenced is returned by a Session that has fenced: it owns nothing and
// may claim nothing; the node needs a new Session.
var ErrFenced = errors.New("fleet session fenced")

// ErrNodeLive is returned by Join when another live session already holds
// the node's name.
var ErrNodeLive = errors.New("node name already held by a live session")

// SessionOptions configure Join.
type SessionOptions struct {
	Info   NodeInfo
	Timing Timing
	// Fence is called once, from the session's goroutine, when the session
	// ends for any reason but Close: it must stop every instance this node
	// runs and return only when they are stopped. reason says why.
	Fence func(reason string)
	Log   *slog.Logger
}

// Session is a node's membership of the fleet: its lease, kept alive
// while etcd answers, and the instances it owns under that lease.
type Session struct {
	cli   *clientv3.Client
	opts  SessionOptions
	lease clientv3.LeaseID
	stop  chan struct{}
	done  chan struct{}

	mu       sync.Mutex // mu guards the following
	deadline *Deadline
	fenced   string // why, once fenced or closed
	owned    map[string]bool
}

// Join grants the node a lease, records the node under it and starts
// keeping it alive. A second live session with the same node name is
// refused (ErrNodeLive).
func Join(ctx context.Context, cli *clientv3.Client, opts SessionOptions) (*Session, error) {
	if err := ValidNode(opts.Info.Node); err != nil {
		return nil, err
	}
	if err := opts.Timing.Valid(); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	sent := time.Now()
	g, err := cli.Grant(ctx, int64(opts.Timing.TTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("fleet: grant lease for node %s: %w", opts.Info.Node, err)
	}
	s := &Session{
		cli: cli, opts: opts, lease: g.ID,
		stop: make(chan struct{}), done: make(chan struct{}),
		deadline: NewDeadline(sent, time.Duration(g.TTL)*time.Second, opts.Timing.Margin),
		owned:    map[string]bool{},
	}
	if opts.Info.Started == "" {
		s.opts.Info.Started = sent.UTC().Format(time.RFC3339)
	}
	val, err := json.Marshal(s.opts.Info)
	if err != nil {
		return nil, err
	}
	key := NodeKey(opts.Info.Node)
	r, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(g.ID))).
		Commit()
	if err == nil && !r.Succeeded {
		err = fmt.Errorf("node %s: %w", opts.Info.Node, ErrNodeLive)
	}
	if err != nil {
		_, _ = cli.Revoke(context.WithoutCancel(ctx), g.ID)
		return nil, fmt.Errorf("fleet: record node %s: %w", opts.Info.Node, err)
	}
	go s.run()
	return s, nil
}

// Lease is the session's etcd lease.
func (s *Session) Lease() clientv3.LeaseID { return s.lease }

// Node is the session's node name.
func (s *Session) Node() string { return s.opts.Info.Node }

// Done is closed when the session has ended (fenced or closed).
func (s *Session) Done() <-chan struct{} { return s.done }

// Fenced returns why the session ended, or "" while it is live.
func (s *Session) Fenced() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fenced
}

// FenceAt is when the session will fence unless etcd answers a keep-alive.
func (s *Session) FenceAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline.FenceAt()
}

// Owned lists the instances this session has claimed and not released.
func (s *Session) Owned() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.owned))
	for k := range s.owned {
		out = append(out, k)
	}
	return out
}

// kaResult is one keep-alive's outcome: when it was sent, and the TTL
// the server answered with or the error.
type kaResult struct {
	sent time.Time
	ttl  int64
	err  error
}

// run fences when the deadline passes, and moves the deadline on as
// keep-alives are answered. The keep-alives run in their own goroutine,
// so that a slow or hanging call never delays the fence.
func (s *Session) run() {
	defer close(s.done)
	quit := make(chan struct{})
	defer close(quit)
	results := make(chan kaResult)
	go s.keepAlive(results, quit)
	fence := time.NewTimer(time.Until(s.FenceAt()))
	defer fence.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-fence.C:
			if d := time.Until(s.FenceAt()); d > 0 { // renewed since the timer was set
				fence.Reset(d)
				continue
			}
			s.fence("no keep-alive answered before the fencing deadline")
			return
		case r := <-results:
			switch {
			case errors.Is(r.err, rpctypes.ErrLeaseNotFound):
				s.fence("lease revoked or expired on the etcd server")
				return
			case r.err != nil:
				s.opts.Log.Warn("fleet keep-alive failed", "node", s.Node(), "err", r.err, "fence_in", time.Until(s.FenceAt()).Round(time.Millisecond))
			case r.ttl <= 0:
				s.fence("lease expired on the etcd server")
				return
			default:
				s.mu.Lock()
				s.deadline.Renewed(r.sent, time.Duration(r.ttl)*time.Second)
				at := s.deadline.FenceAt()
				s.mu.Unlock()
				fence.Reset(time.Until(at))
			}
		}
	}
}

// keepAlive sends a keep-alive every KeepAliveEvery until quit.
func (s *Session) keepAlive(results chan<- kaResult, quit <-chan struct{}) {
	every := s.opts.Timing.KeepAliveEvery()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-quit:
			return
		case <-tick.C:
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), every)
		r, err := s.cli.KeepAliveOnce(ctx, s.lease)
		cancel()
		res := kaResult{sent: sent, err: err}
		if err == nil {
			res.ttl = r.TTL
		}
		select {
		case results <- res:
		case <-quit:
			return
		}
	}
}

// fence marks the session ended, has the node stop what it owns, then
// revokes the lease (best effort) so that other nodes may take over at
// once instead of waiting for the lease to run out.
func (s *Session) fence(reason string) {
	s.mu.Lock()
	s.fenced = reason
	owned := len(s.owned)
	s.owned = map[string]bool{}
	s.mu.Unlock()
	s.opts.Log.Warn("fleet session fenced: stopping this node's instances", "node", s.Node(), "reason", reason, "owned", owned)
	if s.opts.Fence != nil {
		s.opts.Fence(reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timing.Margin)
	defer cancel()
	_, _ = s.cli.Revoke(ctx, s.lease)
}

// Close ends the session without fencing (the caller has stopped or
// handed over its instances): the lease is revoked, so the node's record
// and owner keys go at once.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.fenced != "" {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.fenced = "closed"
	s.owned = map[string]bool{}
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	if _, err := s.cli.Revoke(ctx, s.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("fleet: revoke lease of node %s: %w", s.Node(), err)
	}
	return nil
}

// Claim makes this node the owner of inst, in a transaction that succeeds
// only if no node owns it now. It returns the owner afterwards: this
// node's name when the claim won. Only the winner may start the instance,
// and only before FenceAt.
func (s *Session) Claim(ctx context.Context, inst string) (owner string, err error) {
	if err := ValidInstance(inst); err != nil {
		return "", err
	}
	if why := s.Fenced(); why != "" {
		return "", fmt.Errorf("claim %s: %w (%s)", inst, ErrFenced, why)
	}
	key := OwnerKey(inst)
	r, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, s.Node(), clientv3.WithLease(s.lease))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return "", fmt.Errorf("claim %s for node %s: %w", inst, s.Node(), err)
	}
	if !r.Succeeded {
		kvs := r.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 { // released between the compare and the get: cannot happen in one txn
			return "", fmt.Errorf("claim %s: owner key vanished", inst)
		}
		return string(kvs[0].Value), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fenced != "" { // fenced while the claim was in flight: the lease is gone or going
		return "", fmt.Errorf("claim %s: %w (%s)", inst, ErrFenced, s.fenced)
	}
	s.owned[inst] = true
	return s.Node(), nil
}

// Release gives up ownership of inst (after the node has stopped it). It
// deletes the owner key only if this session's lease still holds it.
func (s *Session) Release(ctx context.Context, inst string) error {
	key := OwnerKey(inst)
	_, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", s.lease)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("release %s for node %s: %w", inst, s.Node(), err)
	}
	s.mu.Lock()
	delete(s.owned, inst)
	s.mu.Unlock()
	return nil
}
