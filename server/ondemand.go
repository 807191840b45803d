package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/ondemand"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/systemd"
	"github.com/tenhq/ten/units"
)

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
	r, end := od.Begin(svc, inst.ID, func() int { return s.reg.ServiceCount(svc.Name) }, client)
	if r != nil {
		return &router.Refused{Status: r.Status, Msg: r.Msg}
	}
	defer end()
	// The client may go away; the creation is finished or undone anyway.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	if s.fleet != nil {
		// Placed like a spawn; the placed node creates it.
		node, err := s.fleet.Spawn(cctx, inst, "")
		od.Done(svc.Name, err)
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
		// Another request is changing the same id: wait for it.
		if s.waitRouted(inst) {
			return nil
		}
		// Not routed once that change ended: it was a stop (which lets
		// requests in flight finish first) or a spawn that failed. This
		// request creates it, as one right after would.
		if err = s.Spawn(cctx, inst); errors.Is(err, ErrBusy) || errors.Is(err, ErrExists) {
			if s.waitRouted(inst) {
				return nil
			}
			return err
		}
	}
	od.Done(svc.Name, err)
	if err != nil {
		s.log.Warn("create on request", "instance", inst.String(), "client", client, "err", err)
		if errors.Is(err, ErrBadInput) {
			if idErr := config.CheckID("instance id", inst.ID); idErr != nil {
				return &router.Refused{Status: http.StatusNotFound, Msg: fmt.Sprintf("no instance %s on this server, and it cannot be created: %v", inst, idErr)}
			}
			// The service's config cannot make it (a command that is
			// not there, say): the operator's business, in ten's log.
			return &router.Refused{Status: http.StatusNotFound, Msg: fmt.Sprintf("no instance %s on this server, and it cannot be created; ten's log says why", inst)}
		}
		return createRefused(inst, svc.StartupTimeout, err)
	}
	s.log.Info("created instance on request", "instance", inst.String(), "client", client)
	return nil
}

// waitRouted waits while another request changes inst (at most
// createTimeout) and reports whether the router has it then.
func (s *Server) waitRouted(inst units.Instance) bool {
	for deadline := time.Now().Add(createTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s.routed(inst) {
			return true
		}
		if !s.reg.Busy(inst) {
			break
		}
	}
	return s.routed(inst)
}

// routed reports whether the router has the instance.
func (s *Server) routed(inst units.Instance) bool {
	_, ok := s.router.Stat(inst)
	return ok
}

// createRefused is what a client whose request would have created inst
// is told when the creation failed with err: 504 when the app did not
// start within its startup_timeout (as for a wake), else 502. A failed
// start removed the units again (systemd.Manager.Create), so the message
// does not send the client to `ten ps`. The error itself goes to ten's log
// only: it can name the command's path and other details of the operator's
// setup, and the client may be anyone.
func createRefused(inst units.Instance, startupTimeout int, err error) *router.Refused {
	var je *systemd.JobError
	if errors.As(err, &je) && je.TimedOut() {
		return &router.Refused{Status: http.StatusGatewayTimeout, Msg: fmt.Sprintf("instance %s could not be started: its app did not listen within startup_timeout %ds, and ten removed the instance again (the next request tries anew); `journalctl -u %s` says what it did", inst, startupTimeout, inst.ServiceUnit())}
	}
	what := "could not be created"
	if je != nil {
		result := je.Result
		if je.UnitResult != "" {
			result = je.UnitResult
		}
		what = "could not be started: its app did not start (systemd: " + result + "), and ten removed the instance again"
	}
	return &router.Refused{Status: http.StatusBadGateway, Msg: fmt.Sprintf("instance %s %s; ten's log and `journalctl -u %s` say why", inst, what, inst.ServiceUnit())}
}
