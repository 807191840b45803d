package auth

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzBearerToken checks the Authorization header parsing: a token is
// found only after the scheme "Bearer" (any case) and a space, comes back
// trimmed and non-empty, is part of the header, and what the CLI sends
// ("Bearer " + token) gives the token back.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer ten_0123456789abcdef_secret", "Bearer ", "Bearer    ", "bearer x", "Basic dXNlcjpwYXNz", "", "Bearer  x ", "Bearer\tx", "Bearer x y", "BearerX", " BEARER x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, ok := BearerToken(header)
		scheme, rest, found := strings.Cut(strings.TrimSpace(header), " ")
		if !ok {
			if tok != "" {
				t.Fatalf("BearerToken(%q) = %q, false", header, tok)
			}
			if found && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(rest) != "" {
				t.Fatalf("BearerToken(%q) found no token", header)
			}
			return
		}
		if !found || !strings.EqualFold(scheme, "Bearer") || tok == "" || tok != strings.TrimSpace(tok) || !strings.Contains(rest, tok) {
			t.Fatalf("BearerToken(%q) = %q", header, tok)
		}
		if again, ok := BearerToken("Bearer " + tok); !ok || again != tok {
			t.Fatalf("BearerToken(%q) = %q, %v; want %q", "Bearer "+tok, again, ok, tok)
		}
	})
}

// Fixed tokens of the store FuzzVerify checks, so that seeds and the
// corpus mean the same in every run.
const (
	fuzzFileToken   = "ten_file-token-for-fuzzing"
	fuzzTenantID    = "0123456789abcdef"
	fuzzTenantToken = "ten_" + fuzzTenantID + "_s3cret"
)

// FuzzVerify checks that the store accepts exactly its tokens (after
// trimming white space) with the right principal, and refuses everything
// else with ErrInvalid, whatever the presented bytes.
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, AdminTokenFile), []byte(fuzzFileToken+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	salt := []byte("0123456789abcdef")
	rec := &record{
		Token:  Token{ID: fuzzTenantID, Tenant: "acme", Created: time.Unix(1700000000, 0).UTC()},
		Params: cheap, Salt: salt, Hash: derive("s3cret", salt, cheap),
	}
	b, err := json.Marshal(fileFormat{Version: 1, Tokens: []*record{rec}})
	if err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, StoreFile), b, 0o600); err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1800000000, 0)
	s, err := Open(dir, Options{Params: cheap, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	for _, tok := range []string{fuzzFileToken, fuzzTenantToken, " " + fuzzTenantToken + "\n", "ten_0123456789ABCDEF_s3cret", "ten_0123456789abcdef_s3creT", "ten_0123456789abcdef_", "ten_0123456789abcde_s3cret", "ten__", "", "ten_0123456789abcdef_s3cret_"} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := s.Verify(tok)
		want, valid := map[string]Principal{
			fuzzFileToken:   {TokenID: FileTokenID},
			fuzzTenantToken: {TokenID: fuzzTenantID, Tenant: "acme"},
		}[strings.TrimSpace(tok)]
		switch {
		case valid && (err != nil || p != want):
			t.Fatalf("Verify(%q) = %+v, %v; want %+v", tok, p, err, want)
		case !valid && (!errors.Is(err, ErrInvalid) || p != Principal{}):
			t.Fatalf("Verify(%q) = %+v, %v; want ErrInvalid", tok, p, err)
		}
	})
}
