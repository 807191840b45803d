package fleetnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/fleet"
	"github.com/tenhq/ten/health"
	"github.com/tenhq/ten/registry"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/strictjson"
	"github.com/tenhq/ten/units"
)

// What a fleet node shares through etcd besides placement (package fleet,
// shared.go): routing weights, failed marks and API tokens. Each is
// written to etcd by the node that is asked, and applied from the
// watcher's view by every node.

// sharedTimeout bounds one etcd write of a weight, mark or token.
const sharedTimeout = 5 * time.Second

// fleetMarks keeps the health loop's failed marks in state.json (so that a
// restarted ten restores them) and in the fleet (so that every node shows
// them and answers 503).
type fleetMarks struct {
	health.Marks
	n *Node
}

// SetFailedMark records the mark in state.json and in etcd.
func (m fleetMarks) SetFailedMark(name, reason string) error {
	err := m.Marks.SetFailedMark(name, reason)
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	return errors.Join(err, fleet.SetFailed(ctx, m.n.cli, name, reason))
}

// ForgetFailedMark removes the mark from state.json and from etcd.
func (m fleetMarks) ForgetFailedMark(name string) error {
	err := m.Marks.ForgetFailedMark(name)
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	return errors.Join(err, fleet.SetFailed(ctx, m.n.cli, name, ""))
}

// Marks is where the health loop keeps failed marks in a fleet: local
// (state.json) and in etcd.
func (n *Node) Marks(local health.Marks) health.Marks { return fleetMarks{Marks: local, n: n} }

// SetWeight is the server's SetWeight in fleet mode: the weight is
// recorded in etcd, whichever node runs the instance, and applied here at
// once when it runs here (the owning node applies it from its view
// otherwise).
func (n *Node) SetWeight(inst units.Instance, w int) error {
	if w < 0 || w > 100 {
		return fmt.Errorf("weight %d: %w: must be 0..100", w, strictjson.ErrBadInput)
	}
	name := inst.String()
	if _, placed, _, _, _ := n.watch.Lookup(name); !placed && !n.local.Has(inst) {
		return fmt.Errorf("weight %s: %w", inst, registry.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	if err := fleet.SetWeight(ctx, n.cli, name, w); err != nil {
		return fmt.Errorf("weight %s: %w", inst, err)
	}
	if n.local.Has(inst) {
		n.appliedWeight(name, w)
		return n.local.SetWeight(inst, w)
	}
	return nil
}

// applyShared applies the view's tokens, and the weights set in the
// fleet for the instances that run here. A weight is applied when etcd's
// value differs from the one last applied, so that a local change (a
// deploy's route) stands until a weight is set in the fleet again.
func (n *Node) applyShared(v fleet.View) {
	n.mu.Lock()
	tokensChanged := n.tokens == nil || !maps.EqualFunc(n.tokens, v.Tokens, bytes.Equal)
	if tokensChanged {
		n.tokens = v.Tokens
	}
	n.mu.Unlock()
	if st := n.local.Tokens(); tokensChanged && st != nil {
		for _, err := range st.SetShared(v.Tokens) {
			n.log.Warn("fleet: a token record in etcd is not usable", "err", err)
		}
	}
	local := n.local.Instances()
	here := make(map[string]bool, len(local))
	for _, inst := range local {
		here[inst.String()] = true
	}
	n.mu.Lock()
	for name := range n.weights { // instances that left this node
		if !here[name] {
			delete(n.weights, name)
		}
	}
	n.mu.Unlock()
	for _, inst := range local {
		name := inst.String()
		w, ok := v.Weights[name]
		if !ok || !n.weightChanged(name, w) {
			continue
		}
		if err := n.local.SetWeight(inst, w); err != nil {
			n.log.Warn("fleet: apply a weight set in the fleet", "instance", name, "weight", w, "err", err)
			continue
		}
		n.appliedWeight(name, w)
	}
}

// weightChanged reports whether w differs from the weight last applied.
func (n *Node) weightChanged(name string, w int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	old, ok := n.weights[name]
	return !ok || old != w
}

// forgetWeight drops what was applied to an earlier instance of name.
func (n *Node) forgetWeight(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.weights, name)
}

// appliedWeight records the fleet weight applied to name here.
func (n *Node) appliedWeight(name string, w int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.weights == nil {
		n.weights = map[string]int{}
	}
	n.weights[name] = w
}

// failed is the router's answer for an instance another node runs and
// marked failed, or nil.
func (n *Node) failed(inst units.Instance, node string) error {
	_, failed := n.watch.Shared(inst.String())
	if failed == "" {
		return nil
	}
	return &router.Refused{Status: http.StatusServiceUnavailable, Msg: fmt.Sprintf("instance %s failed: %s (on node %s; `ten restart %s` there clears it)", inst, failed, node, inst)}
}

// NewToken makes an API token for the whole fleet: its record (the hash,
// never the secret) goes to etcd, and this node uses it at once.
func (n *Node) NewToken(ctx context.Context, tenant, description string) (string, auth.Token, error) {
	st := n.local.Tokens()
	secret, tok, rec, err := st.NewShared(tenant, description)
	if err != nil {
		return "", auth.Token{}, fmt.Errorf("%w: %v", strictjson.ErrBadInput, err)
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	if err := fleet.PutToken(ctx, n.cli, tok.ID, rec); err != nil {
		return "", auth.Token{}, fmt.Errorf("token for the fleet not made: %w", err)
	}
	if err := st.AddShared(tok.ID, rec); err != nil {
		return "", auth.Token{}, err
	}
	return secret, tok, nil
}

// RevokeToken revokes a token of the fleet (made on any node); done is
// false when the fleet has no token with that id (it may be one of this
// node's tokens.json).
func (n *Node) RevokeToken(ctx context.Context, id string) (done bool, err error) {
	id = auth.TokenID(id)
	if fleet.ValidTokenID(id) != nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	existed, err := fleet.DeleteToken(ctx, n.cli, id)
	if err != nil {
		return false, fmt.Errorf("revoke token %s: %w", id, err)
	}
	n.local.Tokens().DropShared(id)
	return existed, nil
}

// Service is the router's pick for {service}.DOMAIN in fleet mode:
// every node's instances of the service share its requests by weight. An
// instance of another node gets the request forwarded (to that instance's
// host); nil leaves the pick to this node's own rotation.
func (n *Node) Service(svc string) *router.Forward {
	c, ok := n.cfg.Services[svc]
	if !ok {
		return nil
	}
	pick, ok := fleet.PickService(n.watch.ServiceInstances(svc))
	if !ok || pick.Node == n.Name() || pick.Addr == "" {
		return nil
	}
	_, id, _ := strings.Cut(pick.Instance, ":")
	return &router.Forward{Node: pick.Node, Addr: pick.Addr, Host: id + "." + svc + "." + n.cfg.Settings.Domain,
		Timeout: c.StartupTimeoutDuration() + c.RequestTimeoutDuration()}
}
