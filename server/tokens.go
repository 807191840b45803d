package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
)

// registerTokens adds the token endpoints (admin only):
//
//	GET    /api/tokens       list (never the secrets)
//	POST   /api/tokens       {"tenant": "acme", "description": "..."} → NewToken
//	DELETE /api/tokens/{id}  revoke
func (s *Server) registerTokens(api *http.ServeMux) {
	api.HandleFunc("GET /api/tokens", func(w http.ResponseWriter, r *http.Request) {
		if !requireAdmin(w, r) {
			return
		}
		writeJSON(w, http.StatusOK, s.auth.store.List())
	})
	api.HandleFunc("POST /api/tokens", func(w http.ResponseWriter, r *http.Request) {
		if !requireAdmin(w, r) {
			return
		}
		var req struct {
			Tenant      string `json:"tenant"`
			Description string `json:"description"`
		}
		if r.ContentLength != 0 {
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				writeErr(w, fmt.Errorf("%w: body must be JSON like {\"tenant\":\"acme\",\"description\":\"deploy bot\"} (both optional; no tenant = admin token): %v", ErrBadInput, err))
				return
			}
		}
		secret, tok, err := s.auth.store.Create(req.Tenant, req.Description)
		if err != nil {
			writeErr(w, fmt.Errorf("%w: %v", ErrBadInput, err))
			return
		}
		s.log.Info("token created", "id", tok.ID, "tenant", tok.Tenant, "by", principalOf(r).TokenID)
		writeJSON(w, http.StatusCreated, NewToken{Token: apitype.Token(tok), Secret: secret})
	})
	api.HandleFunc("DELETE /api/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !requireAdmin(w, r) {
			return
		}
		tok, err := s.auth.store.Revoke(r.PathValue("id"))
		switch {
		case errors.Is(err, auth.ErrNotFound):
			writeJSON(w, http.StatusNotFound, APIError{Error: err.Error()})
			return
		case errors.Is(err, auth.ErrFileToken):
			writeJSON(w, http.StatusBadRequest, APIError{Error: err.Error()})
			return
		case err != nil:
			writeErr(w, err)
			return
		}
		s.log.Info("token revoked", "id", tok.ID, "tenant", tok.Tenant, "by", principalOf(r).TokenID)
		writeJSON(w, http.StatusOK, map[string]string{"revoked": tok.ID})
	})
}
