package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestMintOfflineThenServe: tokens minted with no server, concurrently (each
// writer a store of its own, as separate `ten token-gen` processes are),
// all verify afterwards; a running store accepts a token minted after it
// opened without a restart; an admin mint rewrites api_token and the token
// the file held before keeps working.
func TestMintOfflineThenServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := Mint(dir, "", "bootstrap", Options{Params: cheap})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, AdminTokenFile)); strings.TrimSpace(string(b)) != first.Secret {
		t.Fatalf("api_token holds %q, want the minted admin token", b)
	}
	srv := open(t, dir) // ten serve starting after the bootstrap
	// `ten token-gen` then `ten token list`: the running store lists a
	// token minted after it opened, before anything presented it.
	late, err := Mint(dir, "acme", "made offline", Options{Params: cheap})
	if err != nil {
		t.Fatal(err)
	}
	if !listed(srv.List(), late.ID) {
		t.Errorf("token %s minted offline is not in the running store's list", late.ID)
	}
	if p, err := srv.Verify(first.Secret); err != nil || !p.Admin() {
		t.Fatalf("bootstrap token: %+v %v", p, err)
	}

	var wg sync.WaitGroup
	minted := make([]Minted, 20)
	errs := make([]error, 20)
	for i := range minted {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant := ""
			if i%2 == 1 {
				tenant = "wr_a"
			}
			minted[i], errs[i] = Mint(dir, tenant, "", Options{Params: cheap})
		}()
	}
	// The server writes too meanwhile (a token over the API).
	apiTok, _, err := srv.Create("acme", "")
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, m := range minted {
		if errs[i] != nil {
			t.Fatalf("mint %d: %v", i, errs[i])
		}
		p, err := srv.Verify(m.Secret)
		inFile := p.TokenID == FileTokenID && m.AdminFile != "" // the last admin mint is the file's token too
		if err != nil || (p.TokenID != m.ID && !inFile) || p.Tenant != m.Tenant {
			t.Errorf("minted %d (tenant %q) not accepted by the running store: %+v %v", i, m.Tenant, p, err)
		}
	}
	if _, err := srv.Verify(apiTok); err != nil {
		t.Errorf("the server's own token lost: %v", err)
	}
	if _, err := srv.Verify(first.Secret); err != nil {
		t.Errorf("earlier admin token lost: %v", err)
	}
	if got := len(open(t, dir).List()); got != 1+1+1+20+1 {
		t.Errorf("store lists %d tokens, want 24", got)
	}
}

// listed reports whether toks has a token of this id.
func listed(toks []Token, id string) bool {
	for _, t := range toks {
		if t.ID == id {
			return true
		}
	}
	return false
}

func TestMintKeepsTenementAdminFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, AdminTokenFile), []byte("tenement-old-token\n"), 0o600)
	srv := open(t, dir)
	m, err := Mint(dir, "", "", Options{Params: cheap})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"tenement-old-token", m.Secret} {
		if p, err := srv.Verify(tok); err != nil || !p.Admin() {
			t.Errorf("%s: %+v %v", tok, p, err)
		}
	}
	// The former file token is listed and can be revoked like any.
	var former string
	for _, tk := range srv.List() {
		if tk.Description == "former api_token file" {
			former = tk.ID
		}
	}
	if former == "" {
		t.Fatalf("former file token not listed: %+v", srv.List())
	}
	if _, err := srv.Revoke(former); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Verify("tenement-old-token"); !errors.Is(err, ErrInvalid) {
		t.Errorf("revoked former file token accepted: %v", err)
	}
	if _, err := Mint(dir, "Bad.Tenant", "", Options{Params: cheap}); err == nil {
		t.Error("bad tenant minted")
	}
}
