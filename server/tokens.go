package server

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
)

// checkTokenRequest refuses a body that does not say whose token it is:
// an admin token is made only when asked for in so many words, so that a
// body naming no tenant (a typo in "tenant", a null) never mints a token
// that can do everything.
func checkTokenRequest(q apitype.TokenRequest) error {
	switch {
	case q.Admin && q.Tenant != "":
		return fmt.Errorf("%w: a token is either \"admin\": true or for a \"tenant\", not both", ErrBadInput)
	case !q.Admin && q.Tenant == "":
		return fmt.Errorf("%w: say whose token it is: {\"tenant\": \"acme\"} for a tenant's, or {\"admin\": true} for an admin token", ErrBadInput)
	}
	return nil
}

// registerTokens adds the token endpoints (admin only):
//
//	GET    /api/tokens       list (never the secrets)
//	POST   /api/tokens       TokenRequest → NewToken
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
		var req apitype.TokenRequest
		if !decodeBody(w, r, &req, `{"tenant":"acme","description":"deploy bot"} or {"admin":true,"description":"ci"}`) {
			return
		}
		if err := checkTokenRequest(req); err != nil {
			writeErr(w, err)
			return
		}
		var secret string
		var tok auth.Token
		var err error
		if s.fleet != nil {
			secret, tok, err = s.fleetNewToken(r.Context(), req.Tenant, req.Description)
		} else if secret, tok, err = s.auth.store.Create(req.Tenant, req.Description); err != nil {
			err = fmt.Errorf("%w: %v", ErrBadInput, err)
		}
		if err != nil {
			writeErr(w, err)
			return
		}
		s.log.Info("token created", "id", tok.ID, "tenant", tok.Tenant, "by", principalOf(r).TokenID)
		writeJSON(w, http.StatusCreated, NewToken{Token: apitype.Token(tok), Secret: secret})
	})
	api.HandleFunc("DELETE /api/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !requireAdmin(w, r) {
			return
		}
		if s.fleet != nil { // a token of the fleet, made on any node
			if done, err := s.fleetRevokeToken(r.Context(), r.PathValue("id")); err != nil || done {
				if err != nil {
					writeErr(w, err)
					return
				}
				s.log.Info("token revoked in the fleet", "id", auth.TokenID(r.PathValue("id")), "by", principalOf(r).TokenID)
				writeJSON(w, http.StatusOK, map[string]string{"revoked": auth.TokenID(r.PathValue("id"))})
				return
			}
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
