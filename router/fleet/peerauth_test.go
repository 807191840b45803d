package fleet

import (
	"net/http/httptest"
	"testing"
)

func TestPeerAuth(t *testing.T) {
	a := NewPeerAuth([]byte("secret one"))
	if len(a.Token()) != 64 || a.Token() == NewPeerAuth([]byte("secret two")).Token() {
		t.Fatalf("token %q: want 64 hex digits that differ between fleets", a.Token())
	}
	if !a.Valid([]byte(a.Token())) || a.Valid([]byte(a.Token()[:63])) || a.Valid(nil) || a.Valid([]byte(NewPeerAuth([]byte("secret two")).Token())) {
		t.Error("Valid takes the fleet's token alone")
	}
	var none *PeerAuth
	if none.Token() != "" || none.Valid([]byte("")) || none.Valid([]byte(a.Token())) {
		t.Error("no fleet (nil) must make no token and take none")
	}
	req := httptest.NewRequest("GET", "/", nil)
	if a.ValidRequest(req) {
		t.Error("a request without the header passed")
	}
	req.Header.Set(AuthHeader, a.Token())
	if !a.ValidRequest(req) {
		t.Error("a request with the token failed")
	}
	req.Header.Add(AuthHeader, "other")
	if a.ValidRequest(req) {
		t.Error("a request with the token and another value passed")
	}
}
