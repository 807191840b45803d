package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A token made for the fleet on one store works on another once shared,
// is listed there, is never written to either tokens.json, and stops
// working (also from the cache) when it leaves the shared set.
func TestSharedTokenAcrossStores(t *testing.T) {
	a, b := open(t, t.TempDir()), open(t, t.TempDir())
	secret, tok, rec, err := a.NewShared("acme", "bot")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(secret); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a token not shared yet verified on another store: %v", err)
	}
	if errs := b.SetShared(map[string][]byte{tok.ID: rec, "0123456789abcdef": []byte(`{"id":"other"}`)}); len(errs) != 1 {
		t.Fatalf("SetShared with one bad record: errors %v, want one", errs)
	}
	p, err := b.Verify(secret)
	if err != nil || p.Tenant != "acme" || p.TokenID != tok.ID {
		t.Fatalf("shared token on another store: %+v %v", p, err)
	}
	if p, err := b.Verify(secret); err != nil || p.Tenant != "acme" { // cached
		t.Fatalf("second verify: %+v %v", p, err)
	}
	if _, err := b.Verify(secret + "x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a wrong secret for a shared id: %v", err)
	}
	found := false
	for _, l := range b.List() {
		found = found || l.ID == tok.ID
	}
	if !found || !b.IsShared(tok.ID) {
		t.Fatalf("shared token %s not listed: %+v", tok.ID, b.List())
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(b.dir, StoreFile)); err == nil && len(data) > 0 && strings.Contains(string(data), tok.ID) {
		t.Fatalf("a shared token was written to tokens.json:\n%s", data)
	}
	b.SetShared(map[string][]byte{})
	if _, err := b.Verify(secret); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a token that left the shared set still verifies: %v", err)
	}
	if err := a.AddShared(tok.ID, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(secret); err != nil {
		t.Fatalf("AddShared on the making store: %v", err)
	}
	if !a.DropShared(tok.ID) {
		t.Fatal("DropShared found nothing")
	}
	if _, err := a.Verify(secret); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a dropped shared token still verifies: %v", err)
	}
}

// A node's api_token file token, shared, is an admin token on another
// store, and stops being one when it leaves the shared set.
func TestSharedNodeFileToken(t *testing.T) {
	a, b := open(t, t.TempDir()), open(t, t.TempDir())
	raw, err := os.ReadFile(a.AdminTokenPath())
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(raw))
	if _, err := b.Verify(tok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("another store's file token verified before it was shared: %v", err)
	}
	id, rec, err := a.NodeFileToken("n1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rec), tok) {
		t.Fatalf("the shared record holds the token itself: %s", rec)
	}
	if errs := b.SetShared(map[string][]byte{id: rec}); len(errs) > 0 {
		t.Fatal(errs)
	}
	p, err := b.Verify(tok)
	if err != nil || !p.Admin() || p.TokenID != id {
		t.Fatalf("node n1's file token on another store: %+v %v", p, err)
	}
	b.SetShared(nil)
	if _, err := b.Verify(tok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a node file token no longer shared still verifies: %v", err)
	}
}
