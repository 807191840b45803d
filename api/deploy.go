package api

import (
	"net/http"

	"github.com/tenhq/ten/apitype"
)

// registerDeploy adds POST /api/deploy and POST /api/route.
func (a *API) registerDeploy(api *http.ServeMux) {
	api.HandleFunc("POST /api/deploy", func(w http.ResponseWriter, r *http.Request) {
		var req apitype.DeployRequest
		if !decodeBody(w, r, &req, `{"service":"api","version":"v2","weight":100,"timeout":30}`) {
			return
		}
		res, err := a.b.Deploy(r.Context(), req)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	api.HandleFunc("POST /api/route", func(w http.ResponseWriter, r *http.Request) {
		var req apitype.RouteRequest
		if !decodeBody(w, r, &req, `{"service":"api","from":"v1","to":"v2"}`) {
			return
		}
		res, err := a.b.Route(req)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}
