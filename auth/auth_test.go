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

var cheap = Params{Time: 1, Memory: 64, Threads: 1}

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{Params: cheap})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFileTokenCreatedAndAccepted(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	b, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, AdminTokenFile))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("api_token mode %v, want 0600", st.Mode().Perm())
	}
	p, err := s.Verify(strings.TrimSpace(string(b)))
	if err != nil || !p.Admin() || p.TokenID != FileTokenID {
		t.Fatalf("file token: %+v %v", p, err)
	}
	// An existing file (tenement's, any format) is kept.
	os.WriteFile(filepath.Join(dir, AdminTokenFile), []byte("my-old-token\n"), 0o600)
	s = open(t, dir)
	if _, err := s.Verify("my-old-token"); err != nil {
		t.Errorf("old token file: %v", err)
	}
	if _, err := s.Verify(strings.TrimSpace(string(b))); !errors.Is(err, ErrInvalid) {
		t.Errorf("replaced file token still accepted: %v", err)
	}
}

func TestCreateVerifyRevoke(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	admin, at, err := s.Create("", "ci")
	if err != nil {
		t.Fatal(err)
	}
	tenant, tt, err := s.Create("acme", "acme's deploy bot")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(admin, "ten_"+at.ID+"_") || !strings.HasPrefix(tenant, "ten_"+tt.ID+"_") {
		t.Fatalf("token format: %q %q", admin, tenant)
	}
	for range 2 { // second round hits the verified cache
		p, err := s.Verify(admin)
		if err != nil || !p.Admin() || p.TokenID != at.ID {
			t.Fatalf("admin: %+v %v", p, err)
		}
		p, err = s.Verify(tenant)
		if err != nil || p.Admin() || p.Tenant != "acme" {
			t.Fatalf("tenant: %+v %v", p, err)
		}
		if !p.MayTouch("acme") || p.MayTouch("other") {
			t.Errorf("MayTouch wrong for %+v", p)
		}
	}
	for _, bad := range []string{"", "ten_", tenant + "x", tenant[:len(tenant)-1], "ten_" + tt.ID + "_", "ten_zzzzzzzzzzzzzzzz_abc", strings.Replace(admin, at.ID, tt.ID, 1)} {
		if _, err := s.Verify(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Verify(%q) = %v, want ErrInvalid", bad, err)
		}
	}

	// Stored hashed: no secret on disk.
	raw, _ := os.ReadFile(filepath.Join(dir, StoreFile))
	for _, tok := range []string{admin, tenant} {
		_, secret, _ := splitToken(tok)
		if strings.Contains(string(raw), secret) {
			t.Fatalf("secret stored in plaintext")
		}
	}
	st, _ := os.Stat(filepath.Join(dir, StoreFile))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("store mode %v", st.Mode().Perm())
	}

	// A new process (fresh cache) accepts them from disk; last-used times
	// are written at most once a minute, and on Flush.
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dir)
	if p, err := s2.Verify(tenant); err != nil || p.Tenant != "acme" {
		t.Fatalf("reloaded: %+v %v", p, err)
	}
	list := s2.List()
	if len(list) != 3 || list[0].ID != FileTokenID || list[1].ID != at.ID || list[2].ID != tt.ID {
		t.Fatalf("list: %+v", list)
	}
	if list[2].Description != "acme's deploy bot" || list[2].Tenant != "acme" || list[2].LastUsed.IsZero() || list[1].LastUsed.IsZero() {
		t.Errorf("list entry: %+v", list[2])
	}
	j, _ := json.Marshal(list)
	_, secret, _ := splitToken(tenant)
	if strings.Contains(string(j), secret) || strings.Contains(string(j), "hash") {
		t.Errorf("list leaks secrets: %s", j)
	}

	// Revoke, by id or by pasting the token; the cache forgets it.
	if _, err := s2.Revoke(tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Verify(tenant); !errors.Is(err, ErrInvalid) {
		t.Errorf("revoked token accepted: %v", err)
	}
	if _, err := s2.Revoke(tt.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second revoke: %v", err)
	}
	if _, err := s2.Revoke(FileTokenID); !errors.Is(err, ErrFileToken) {
		t.Errorf("revoke file token: %v", err)
	}
	if s3 := open(t, dir); len(s3.List()) != 2 {
		t.Errorf("revoke not persisted: %+v", s3.List())
	}
	if _, err := open(t, dir).Verify(tenant); !errors.Is(err, ErrInvalid) {
		t.Errorf("revoked token accepted after reload: %v", err)
	}
	if _, err := s.Verify(admin); err != nil {
		t.Errorf("other token affected: %v", err)
	}
}

func TestCreateRejectsBadTenant(t *testing.T) {
	s := open(t, t.TempDir())
	for _, bad := range []string{"a.b", "a b", "../x", "a:b", strings.Repeat("x", 64)} {
		if _, _, err := s.Create(bad, ""); err == nil {
			t.Errorf("Create(%q) accepted", bad)
		}
	}
	if len(s.List()) != 1 {
		t.Errorf("bad input stored a token")
	}
}

func TestOpenRejectsCorruptStore(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, StoreFile), []byte("{not json"), 0o600)
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), StoreFile) {
		t.Errorf("corrupt store: %v", err)
	}
}

func TestDefaultParamsHash(t *testing.T) {
	if testing.Short() {
		t.Skip("argon2id with real parameters")
	}
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.Create("", "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := s.Verify(tok); err != nil {
		t.Fatal(err)
	}
	t.Logf("argon2id verify with %+v: %s", DefaultParams, time.Since(start))
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(func() time.Time { return now })
	for i := 1; i < MaxFailures; i++ {
		if l.Fail("1.2.3.4") {
			t.Fatalf("locked after %d failures", i)
		}
	}
	if locked, _ := l.Locked("1.2.3.4"); locked {
		t.Fatal("locked too early")
	}
	if !l.Fail("1.2.3.4") {
		t.Fatal("10th failure did not lock")
	}
	if locked, left := l.Locked("1.2.3.4"); !locked || left != Lockout {
		t.Fatalf("locked=%v left=%s", locked, left)
	}
	if locked, _ := l.Locked("5.6.7.8"); locked {
		t.Fatal("another client is locked out too")
	}
	// A success during the lockout does not lift it.
	l.Succeed("1.2.3.4")
	now = now.Add(Lockout - time.Millisecond)
	if locked, _ := l.Locked("1.2.3.4"); !locked {
		t.Fatal("lockout lifted early")
	}
	now = now.Add(time.Millisecond)
	if locked, _ := l.Locked("1.2.3.4"); locked {
		t.Fatal("lockout did not end")
	}
	// Counting starts over; a success clears the count.
	for range MaxFailures - 1 {
		l.Fail("1.2.3.4")
	}
	l.Succeed("1.2.3.4")
	if l.Fail("1.2.3.4") {
		t.Fatal("success did not clear failures")
	}
	// Old failures are forgotten.
	for range MaxFailures - 2 {
		l.Fail("9.9.9.9")
	}
	now = now.Add(forget + time.Second)
	if l.Fail("9.9.9.9") || l.Fail("9.9.9.9") {
		t.Fatal("stale failures counted")
	}
}

// A check in flight while the store is read again (a last-used save, a
// token made or revoked elsewhere) still accepts a token that is still
// there: the reload gives its record a new address, which made the check
// answer ErrInvalid, a 401 for a good token that also counted toward the
// client's lockout.
func TestCheckDuringReload(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{}) // real cost: the reload lands mid-check
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.Create("acme", "")
	if err != nil {
		t.Fatal(err)
	}
	done, exited := make(chan struct{}), make(chan struct{})
	// The reloads end before t.TempDir's cleanup, which an update still
	// writing in dir would race.
	defer func() { close(done); <-exited }()
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			default:
				s.mu.Lock()
				_ = s.update(nil)
				s.mu.Unlock()
			}
		}
	}()
	for i := range 10 {
		c, _ := s.Candidate(tok)
		if _, err := c.Check(); err != nil {
			t.Fatalf("check %d of a good token during reloads: %v", i, err)
		}
	}
}
