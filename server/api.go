package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tenhq/ten/strictjson"
	"github.com/tenhq/ten/units"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	if e, ok := v.(APIError); ok {
		v = APIError{Error: strictjson.ClipError(e.Error)}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUnknownService):
		status = http.StatusNotFound
	case errors.Is(err, ErrExists), errors.Is(err, ErrBusy):
		status = http.StatusConflict
	case errors.Is(err, ErrBadInput):
		status = http.StatusBadRequest
	}
	writeJSON(w, status, APIError{Error: err.Error()})
}

// unknownServiceHint adds, for an admin, which services the config
// declares to an ErrUnknownService. A tenant is told only that the service
// is unknown: the config's path and the other services are not its business.
func (s *Server) unknownServiceHint(r *http.Request, err error) error {
	if !errors.Is(err, ErrUnknownService) || !principalOf(r).Admin() {
		return err
	}
	return fmt.Errorf("%w: %s declares services %s", err, s.cfg.Path, strings.Join(s.cfg.ServiceNames(), ", "))
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", s.metricsEndpoint(true))
	// The bare domain is the dashboard (dashboard.go).
	mux.Handle("GET /{$}", s.dash)
	mux.Handle("/dashboard", s.dash)
	mux.Handle("/dashboard/", s.dash)
	api := http.NewServeMux()
	api.HandleFunc("GET /api/instances", func(w http.ResponseWriter, r *http.Request) {
		rows, err := s.Rows(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		if s.fleet != nil {
			rows = s.fleetRows(rows)
		}
		writeJSON(w, http.StatusOK, scopeRows(r, rows))
	})
	api.HandleFunc("POST /api/instances/spawn", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Instance string `json:"instance"`
			Service  string `json:"service"`
			Process  string `json:"process"`
			ID       string `json:"id"`
			// Node (fleet mode) places the instance on that node.
			Node string `json:"node"`
		}
		if !decodeBody(w, r, &req, `{"instance":"api:prod"} or {"process":"api","id":"prod"}`) {
			return
		}
		name := req.Instance
		if name == "" {
			svc := req.Service
			if svc == "" {
				svc = req.Process
			}
			name = svc + ":" + req.ID
		}
		inst, err := units.ParseInstance(name)
		if err != nil {
			writeErr(w, fmt.Errorf("%w: %v", ErrBadInput, err))
			return
		}
		if !mayTouch(w, r, inst) {
			return
		}
		if s.fleet != nil {
			node, err := s.fleetSpawn(r.Context(), inst, req.Node)
			if err != nil {
				writeErr(w, s.unknownServiceHint(r, err))
				return
			}
			row := Row{Instance: inst.String(), ID: inst.String(), Node: node, State: StateRemote}
			if node == s.fleet.node() {
				if row, err = s.Row(r.Context(), inst); err != nil {
					writeErr(w, err)
					return
				}
				row.Node = node
			}
			writeJSON(w, http.StatusCreated, row)
			return
		}
		if req.Node != "" {
			writeErr(w, fmt.Errorf("%w: node %q: this server is not part of a fleet (no [fleet] in %s)", ErrBadInput, req.Node, s.cfg.Path))
			return
		}
		if err := s.Spawn(r.Context(), inst); err != nil {
			writeErr(w, s.unknownServiceHint(r, err))
			return
		}
		row, err := s.Row(r.Context(), inst)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, row)
	})
	withInst := func(f func(w http.ResponseWriter, r *http.Request, inst units.Instance)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			inst, err := units.ParseInstance(r.PathValue("id"))
			if err != nil {
				writeErr(w, fmt.Errorf("%w: %v", ErrBadInput, err))
				return
			}
			f(w, r, inst)
		}
	}
	api.HandleFunc("GET /api/instances/{id}", withInst(func(w http.ResponseWriter, r *http.Request, inst units.Instance) {
		row, err := s.Row(r.Context(), inst)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, row)
	}))
	api.HandleFunc("DELETE /api/instances/{id}", withInst(func(w http.ResponseWriter, r *http.Request, inst units.Instance) {
		stop := s.Stop
		if s.fleet != nil {
			stop = s.fleetStop
		}
		if err := stop(r.Context(), inst); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"stopped": inst.String()})
	}))
	api.HandleFunc("POST /api/instances/{id}/restart", withInst(func(w http.ResponseWriter, r *http.Request, inst units.Instance) {
		if err := s.Restart(r.Context(), inst); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"restarted": inst.String()})
	}))
	api.HandleFunc("PUT /api/instances/{id}/weight", withInst(func(w http.ResponseWriter, r *http.Request, inst units.Instance) {
		var req struct {
			Weight *int `json:"weight"`
		}
		if !decodeBody(w, r, &req, `{"weight": 50}`) {
			return
		}
		if req.Weight == nil {
			writeErr(w, fmt.Errorf("%w: field \"weight\" is missing (the body must be JSON like {\"weight\": 50})", ErrBadInput))
			return
		}
		if err := s.SetWeight(inst, *req.Weight); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"instance": inst.String(), "weight": *req.Weight})
	}))
	// Each feature registers its endpoints here from its own file.
	for _, register := range []func(*http.ServeMux){
		s.registerTokens,
		s.registerLogs,
		s.registerStorage,
		s.registerNotFound,
		s.registerDeploy,
		s.registerFeatures,
		s.registerTLS,
	} {
		register(api)
	}
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, ok := s.authorize(w, r)
		if !ok {
			return
		}
		if s.fleet != nil && s.fleetForwardAPI(w, r) { // another node runs it (fleet_api.go)
			return
		}
		api.ServeHTTP(w, r)
	}))
	return mux
}
