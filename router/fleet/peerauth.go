package fleet

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
)

// AuthHeader carries the fleet's peer token (PeerAuth) on a request one
// node's router forwards to another. A router trusts a forwarded
// request's X-Forwarded-* headers (the client it names) only with a valid
// token: a peer's address alone is not enough, since an app on a peer
// node connects from that address too. Routers remove the header before a
// request goes to an app.
const AuthHeader = "X-Ten-Fleet-Auth"

// PeerAuth is the token the routers of one fleet show each other. It is
// derived from a secret all nodes read from the fleet's store (etcd); a nil
// *PeerAuth (no fleet) makes no token and accepts none.
type PeerAuth struct {
	token string
}

// NewPeerAuth returns the PeerAuth of the fleet whose shared secret is key.
func NewPeerAuth(key []byte) *PeerAuth {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("ten fleet peer router v1"))
	return &PeerAuth{token: hex.EncodeToString(m.Sum(nil))}
}

// Token is the value of AuthHeader a forwarding router sets ("" for nil).
func (a *PeerAuth) Token() string {
	if a == nil {
		return ""
	}
	return a.token
}

// Valid reports, in constant time, whether v is the fleet's token.
func (a *PeerAuth) Valid(v []byte) bool {
	if a == nil || len(v) != len(a.token) {
		return false
	}
	return subtle.ConstantTimeCompare(v, []byte(a.token)) == 1
}

// ValidRequest reports whether req carries the fleet's token, and only one.
func (a *PeerAuth) ValidRequest(req *http.Request) bool {
	vs := req.Header.Values(AuthHeader)
	return len(vs) == 1 && a.Valid([]byte(vs[0]))
}
