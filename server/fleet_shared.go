package server

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
	"github.com/tenhq/ten/router"
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
	f *fleetNode
}

// SetFailedMark records the mark in state.json and in etcd.
func (m fleetMarks) SetFailedMark(name, reason string) error {
	err := m.Marks.SetFailedMark(name, reason)
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	return errors.Join(err, fleet.SetFailed(ctx, m.f.cli, name, reason))
}

// ForgetFailedMark removes the mark from state.json and from etcd.
func (m fleetMarks) ForgetFailedMark(name string) error {
	err := m.Marks.ForgetFailedMark(name)
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	return errors.Join(err, fleet.SetFailed(ctx, m.f.cli, name, ""))
}

// marks is where the health loop keeps failed marks.
func (s *Server) marks() health.Marks {
	if s.fleet != nil {
		return fleetMarks{Marks: s.state, f: s.fleet}
	}
	return s.state
}

// fleetSetWeight is SetWeight in fleet mode: the weight is recorded in
// etcd, whichever node runs the instance, and applied here at once when it
// runs here (the owning node applies it from its view otherwise).
func (s *Server) fleetSetWeight(inst units.Instance, w int) error {
	if w < 0 || w > 100 {
		return fmt.Errorf("weight %d: %w: must be 0..100", w, ErrBadInput)
	}
	name := inst.String()
	if _, placed, _, _, _ := s.fleet.watch.Lookup(name); !placed && !s.reg.Has(inst) {
		return fmt.Errorf("weight %s: %w", inst, ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	if err := fleet.SetWeight(ctx, s.fleet.cli, name, w); err != nil {
		return fmt.Errorf("weight %s: %w", inst, err)
	}
	if s.reg.Has(inst) {
		s.fleet.appliedWeight(name, w)
		return s.setWeightLocal(inst, w)
	}
	return nil
}

// fleetApplyShared applies the view's tokens, and the weights set in the
// fleet for the instances that run here. A weight is applied when etcd's
// value differs from the one last applied, so that a local change (a
// deploy's route) stands until a weight is set in the fleet again.
func (s *Server) fleetApplyShared(v fleet.View) {
	f := s.fleet
	f.mu.Lock()
	tokensChanged := f.tokens == nil || !maps.EqualFunc(f.tokens, v.Tokens, bytes.Equal)
	if tokensChanged {
		f.tokens = v.Tokens
	}
	f.mu.Unlock()
	if tokensChanged && s.auth != nil {
		for _, err := range s.auth.store.SetShared(v.Tokens) {
			s.log.Warn("fleet: a token record in etcd is not usable", "err", err)
		}
	}
	local := s.reg.Instances()
	here := make(map[string]bool, len(local))
	for _, inst := range local {
		here[inst.String()] = true
	}
	f.mu.Lock()
	for name := range f.weights { // instances that left this node
		if !here[name] {
			delete(f.weights, name)
		}
	}
	f.mu.Unlock()
	for _, inst := range local {
		name := inst.String()
		w, ok := v.Weights[name]
		if !ok || !f.weightChanged(name, w) {
			continue
		}
		if err := s.setWeightLocal(inst, w); err != nil {
			s.log.Warn("fleet: apply a weight set in the fleet", "instance", name, "weight", w, "err", err)
			continue
		}
		f.appliedWeight(name, w)
	}
}

// weightChanged reports whether w differs from the weight last applied.
func (f *fleetNode) weightChanged(name string, w int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	old, ok := f.weights[name]
	return !ok || old != w
}

// forgetWeight drops what was applied to an earlier instance of name.
func (f *fleetNode) forgetWeight(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.weights, name)
}

// appliedWeight records the fleet weight applied to name here.
func (f *fleetNode) appliedWeight(name string, w int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.weights == nil {
		f.weights = map[string]int{}
	}
	f.weights[name] = w
}

// fleetFailed is the router's answer for an instance another node runs
// and marked failed, or nil.
func (s *Server) fleetFailed(inst units.Instance, node string) error {
	_, failed := s.fleet.watch.Shared(inst.String())
	if failed == "" {
		return nil
	}
	return &router.Refused{Status: http.StatusServiceUnavailable, Msg: fmt.Sprintf("instance %s failed: %s (on node %s; `ten restart %s` there clears it)", inst, failed, node, inst)}
}

// fleetNewToken makes an API token for the whole fleet: its record (the
// hash, never the secret) goes to etcd, and this node uses it at once.
func (s *Server) fleetNewToken(ctx context.Context, tenant, description string) (string, auth.Token, error) {
	secret, tok, rec, err := s.auth.store.NewShared(tenant, description)
	if err != nil {
		return "", auth.Token{}, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	if err := fleet.PutToken(ctx, s.fleet.cli, tok.ID, rec); err != nil {
		return "", auth.Token{}, fmt.Errorf("token for the fleet not made: %w", err)
	}
	if err := s.auth.store.AddShared(tok.ID, rec); err != nil {
		return "", auth.Token{}, err
	}
	return secret, tok, nil
}

// fleetRevokeToken revokes a token of the fleet (made on any node); done
// is false when the fleet has no token with that id (it may be one of
// this node's tokens.json).
func (s *Server) fleetRevokeToken(ctx context.Context, id string) (done bool, err error) {
	id = auth.TokenID(id)
	if fleet.ValidTokenID(id) != nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	existed, err := fleet.DeleteToken(ctx, s.fleet.cli, id)
	if err != nil {
		return false, fmt.Errorf("revoke token %s: %w", id, err)
	}
	s.auth.store.DropShared(id)
	return existed, nil
}

// fleetService is the router's pick for {service}.DOMAIN in fleet mode:
// every node's instances of the service share its requests by weight. An
// instance of another node gets the request forwarded (to that instance's
// host); nil leaves the pick to this node's own rotation.
func (s *Server) fleetService(svc string) *router.Forward {
	c, ok := s.cfg.Services[svc]
	if !ok {
		return nil
	}
	pick, ok := fleet.PickService(s.fleet.watch.ServiceInstances(svc))
	if !ok || pick.Node == s.fleet.node() || pick.Addr == "" {
		return nil
	}
	_, id, _ := strings.Cut(pick.Instance, ":")
	return &router.Forward{Node: pick.Node, Addr: pick.Addr, Host: id + "." + svc + "." + s.cfg.Settings.Domain,
		Timeout: c.StartupTimeoutDuration() + c.RequestTimeoutDuration()}
}
