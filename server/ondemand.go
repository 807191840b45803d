package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tenhq/ten/ondemand"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// onDemand creates instances that a request names (tenement's wake on
// request of a new id), within the guard's bounds.
type onDemand struct {
	guard *ondemand.Guard

	mu sync.Mutex // mu guards the following
	// pending counts creations in progress per service, so concurrent
	// requests for new ids cannot pass max_instances together.
	pending map[string]int
}

// createTimeout bounds one creation by request.
const createTimeout = ondemand.CreateTimeout

// createOnRequest implements router.Create.
func (s *Server) createOnRequest(ctx context.Context, inst units.Instance, client string) error {
	svc, ok := s.cfg.Services[inst.Service]
	if !ok {
		return &router.Refused{Status: http.StatusNotFound, Msg: fmt.Sprintf("no service %s on this server", inst.Service)}
	}
	if s.fleet != nil {
		if err, ok := s.fleet.Route(inst); ok {
			return err
		}
	}
	od := s.onDemand
	od.mu.Lock()
	existing := od.pending[svc.Name]
	for _, i := range s.reg.Instances() {
		if i.Service == svc.Name {
			existing++
		}
	}
	if r := od.guard.Check(svc, inst.ID, existing, client); r != nil {
		od.mu.Unlock()
		return &router.Refused{Status: r.Status, Msg: r.Msg}
	}
	od.pending[svc.Name]++
	od.mu.Unlock()
	defer func() {
		od.mu.Lock()
		od.pending[svc.Name]--
		od.mu.Unlock()
	}()
	// The client may go away; the creation is finished or undone anyway.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	if s.fleet != nil {
		// Placed like a spawn; the placed node creates it.
		node, err := s.fleet.Spawn(cctx, inst, "")
		od.guard.Done(svc.Name, err)
		if err != nil {
			s.log.Warn("create on request", "instance", inst.String(), "client", client, "err", err)
			return &router.Refused{Status: http.StatusServiceUnavailable, Msg: fmt.Sprintf("instance %s could not be placed: %v", inst, err)}
		}
		s.log.Info("placed instance on request", "instance", inst.String(), "node", node, "client", client)
		if err, ok := s.fleet.Route(inst); ok {
			return err
		}
		return nil
	}
	err := s.Spawn(cctx, inst)
	if errors.Is(err, ErrBusy) || errors.Is(err, ErrExists) {
		// Another request is creating the same id: wait for it.
		for deadline := time.Now().Add(createTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if s.routed(inst) {
				return nil
			}
			if !s.reg.Busy(inst) {
				break
			}
		}
		if s.routed(inst) {
			return nil
		}
		return err
	}
	od.guard.Done(svc.Name, err)
	if err != nil {
		s.log.Warn("create on request", "instance", inst.String(), "client", client, "err", err)
		if errors.Is(err, ErrBadInput) {
			return &router.Refused{Status: http.StatusNotFound, Msg: fmt.Sprintf("no instance %s on this server, and it cannot be created: %v", inst, err)}
		}
		return err
	}
	s.log.Info("created instance on request", "instance", inst.String(), "client", client)
	return nil
}

// routed reports whether the router has the instance.
func (s *Server) routed(inst units.Instance) bool {
	_, ok := s.router.Stat(inst)
	return ok
}
