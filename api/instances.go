package api

import (
	"errors"
	"net/http"

	"github.com/tenhq/ten/units"
)

// registerInstances adds the instance endpoints:
//
//	GET    /api/instances               ps (scoped to the token)
//	POST   /api/instances/spawn         {"instance":"api:prod"}
//	GET    /api/instances/{id}          one row
//	DELETE /api/instances/{id}          stop and remove
//	POST   /api/instances/{id}/restart
//	PUT    /api/instances/{id}/weight   {"weight": 50}
//	GET    /api/instances/{id}/health
//	GET    /api/instances/{id}/storage
//	GET    /api/features, /api/tls/status
func (a *API) registerInstances(api *http.ServeMux) {
	api.HandleFunc("GET /api/instances", func(w http.ResponseWriter, r *http.Request) {
		rows, err := a.b.List(r.Context())
		if err != nil {
			writeErr(w, err)
			return
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
			writeErr(w, badInput(err))
			return
		}
		if !mayTouch(w, r, inst) {
			return
		}
		row, err := a.b.Create(r.Context(), inst, req.Node)
		if err != nil {
			writeErr(w, a.unknownServiceHint(r, err))
			return
		}
		// 200, as tenement answers (scripts written for it check it).
		writeJSON(w, http.StatusOK, row)
	})
	api.HandleFunc("GET /api/instances/{id}", withInst(func(w http.ResponseWriter, r *http.Request, inst units.Instance) {
		row, err := a.b.Row(r.Context(), inst)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, row)
	}))
	api.HandleFunc("DELETE /api/instances/{id}", withInst(func(w http.ResponseWriter, r *http.Request, inst units.Instance) {
		if err := a.b.Remove(r.Context(), inst); err != nil {
			writeErr(w, err)
			return
		}
		// 204 and no body, as tenement answers.
		w.WriteHeader(http.StatusNoContent)
	}))
	api.HandleFunc("POST /api/instances/{id}/restart", withInst(func(w http.ResponseWriter, r *http.Request, inst units.Instance) {
		if err := a.b.Restart(r.Context(), inst); err != nil {
			writeErr(w, err)
			return
		}
		// tenement answers {instance, socket, port}; ten's own key is restarted.
		res := map[string]any{"restarted": inst.String(), "instance": inst.String()}
		if row, err := a.b.Row(r.Context(), inst); err == nil {
			res["socket"] = row.Socket
			if row.Port != 0 {
				res["port"] = row.Port
			}
		}
		writeJSON(w, http.StatusOK, res)
	}))
	api.HandleFunc("PUT /api/instances/{id}/weight", withInst(func(w http.ResponseWriter, r *http.Request, inst units.Instance) {
		var req struct {
			Weight *int `json:"weight"`
		}
		if !decodeBody(w, r, &req, `{"weight": 50}`) {
			return
		}
		if req.Weight == nil {
			writeErr(w, badInput(errors.New("field \"weight\" is missing (the body must be JSON like {\"weight\": 50})")))
			return
		}
		if err := a.b.SetWeight(inst, *req.Weight); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"instance": inst.String(), "weight": *req.Weight})
	}))
	api.HandleFunc("GET /api/instances/{id}/health", withInst(func(w http.ResponseWriter, r *http.Request, inst units.Instance) {
		h, err := a.b.Health(r.Context(), inst)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, h)
	}))
	api.HandleFunc("GET /api/instances/{id}/storage", withInst(func(w http.ResponseWriter, r *http.Request, inst units.Instance) {
		if !mayTouch(w, r, inst) {
			return
		}
		st, err := a.b.Storage(r.Context(), inst)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	}))
	// For `ten doctor` against a running server.
	api.HandleFunc("GET /api/features", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.b.Features())
	})
	api.HandleFunc("GET /api/tls/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.b.TLSStatus())
	})
}
