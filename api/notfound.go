package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/tenhq/ten/apitype"
)

// registerNotFound answers API paths no endpoint matches with JSON too
// (the ServeMux default is a plain-text 404), and a wrong method with 405
// and the methods that would work.
func (a *API) registerNotFound(api *http.ServeMux) {
	api.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, pattern := api.Handler(r2); pattern != "/api/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, apitype.APIError{Error: fmt.Sprintf("%s %s: method not allowed; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))})
			return
		}
		writeJSON(w, http.StatusNotFound, apitype.APIError{Error: fmt.Sprintf("no API endpoint %s %s (see README: Tokens, logs, storage; and tenement's HTTP API)", r.Method, r.URL.Path)})
	})
}
