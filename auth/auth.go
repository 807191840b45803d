// Package auth is ten's API token store: admin and tenant-scoped bearer
// tokens, kept hashed with argon2id in {data_dir}/tokens.json, plus the
// plaintext admin token file {data_dir}/api_token that the CLI reads (root
// only, as in tenement). It also holds the failure limiter that answers 429
// after repeated bad tokens.
//
// A token reads ten_<id>_<secret>. The id is not secret: it names the stored
// record, so checking a token costs one argon2id derivation, never a scan of
// every record. Tokens that verified once are remembered by their SHA-256 for
// the life of the process, so ordinary API traffic does not pay for argon2id
// on each request; revoking a token forgets it.
//
// A tenant token may touch only instances whose id equals its tenant
// (tenement's rule: instance id == tenant). The store only says who a token
// belongs to; the server decides what that principal may reach.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/tenhq/ten/config"
)

// File names in the data dir.
const (
	// AdminTokenFile holds the plaintext admin token (mode 0600), tenement's name.
	AdminTokenFile = "api_token"
	// StoreFile holds the hashed tokens (mode 0600).
	StoreFile = "tokens.json"
)

// FileTokenID is the id under which the api_token file's token is listed.
const FileTokenID = "api_token"

// Errors of the store.
var (
	// ErrInvalid means the presented token is unknown, revoked or malformed.
	ErrInvalid = errors.New("invalid token")
	// ErrNotFound means no stored token has that id.
	ErrNotFound = errors.New("no such token")
	// ErrFileToken means the api_token file's token was asked to be revoked.
	ErrFileToken = errors.New("the admin token of the api_token file cannot be revoked over the API")
)

// Principal is who a verified token speaks for.
type Principal struct {
	// TokenID is the id of the token (FileTokenID for the api_token file).
	TokenID string
	// Tenant is empty for admin tokens.
	Tenant string
}

// Admin reports whether the principal may do everything.
func (p Principal) Admin() bool { return p.Tenant == "" }

// MayTouch reports whether the principal may act on an instance with this id.
func (p Principal) MayTouch(instanceID string) bool {
	return p.Tenant == "" || p.Tenant == instanceID
}

// Token is one stored token, without its secret.
type Token struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	LastUsed    time.Time `json:"last_used,omitzero"`
}

// Admin reports whether this is an admin token.
func (t Token) Admin() bool { return t.Tenant == "" }

// Params are the argon2id parameters of a hash; they are stored with each
// hash so they can change without invalidating old tokens.
type Params struct {
	Time    uint32 `json:"t"`
	Memory  uint32 `json:"m"` // KiB
	Threads uint8  `json:"p"`
}

// DefaultParams follow OWASP's argon2id minimum (19 MiB, t=1, p=1): one
// verify costs tens of milliseconds, and each token is verified once per
// process thanks to the cache.
var DefaultParams = Params{Time: 1, Memory: 19 * 1024, Threads: 1}

type record struct {
	Token
	Params Params `json:"argon2id"`
	Salt   []byte `json:"salt"`
	Hash   []byte `json:"hash"`
}

type fileFormat struct {
	Version int       `json:"version"`
	Tokens  []*record `json:"tokens"`
}

// Store holds the tokens of one data dir. It is safe for concurrent use.
type Store struct {
	dir    string
	params Params
	now    func() time.Time

	mu        sync.Mutex
	fileHash  [32]byte // sha256 of the api_token file's token
	fileUsed  time.Time
	fileMtime time.Time
	recs      map[string]*record
	// verified maps sha256(token) of tokens that passed argon2id to their id.
	verified map[[32]byte]string
	saved    time.Time

	// dummyOnce makes the hash unknown ids are checked against (dummy).
	dummyOnce sync.Once
	dummySalt []byte
	dummyHash []byte
}

// Options tune a store; the zero value is right outside tests.
type Options struct {
	// Params overrides DefaultParams for new hashes (tests use cheap ones).
	Params Params
	// Now overrides time.Now.
	Now func() time.Time
}

// Open loads the store of dataDir, creating the api_token file (a fresh
// admin token, mode 0600) when it is missing.
func Open(dataDir string, o Options) (*Store, error) {
	s := &Store{dir: dataDir, params: o.Params, now: o.Now, recs: map[string]*record{}, verified: map[[32]byte]string{}}
	if s.params == (Params{}) {
		s.params = DefaultParams
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.loadFileToken(); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, StoreFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read token store %s: %w", path, err)
	default:
		var f fileFormat
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("token store %s: %w (fix or remove the file; removing it revokes every token but the api_token file's)", path, err)
		}
		for _, r := range f.Tokens {
			if r == nil || r.ID == "" || len(r.Hash) == 0 || len(r.Salt) == 0 || r.Params.Time == 0 || r.Params.Memory == 0 || r.Params.Threads == 0 {
				return nil, fmt.Errorf("token store %s: a token record is incomplete (fix or remove it)", path)
			}
			s.recs[r.ID] = r
		}
	}
	return s, nil
}

// loadFileToken reads api_token, creating it when missing.
func (s *Store) loadFileToken() error {
	path := filepath.Join(s.dir, AdminTokenFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		tok, err := randomHex(24)
		if err != nil {
			return err
		}
		tok = "ten_" + tok
		if err := writeFileAtomic(path, []byte(tok+"\n")); err != nil {
			return fmt.Errorf("write admin token %s: %w", path, err)
		}
		b = []byte(tok)
	} else if err != nil {
		return fmt.Errorf("read admin token %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return fmt.Errorf("admin token file %s is empty (remove it and ten serve writes a new one)", path)
	}
	s.fileHash = sha256.Sum256([]byte(tok))
	if st, err := os.Stat(path); err == nil {
		s.fileMtime = st.ModTime()
	}
	return nil
}

// AdminTokenPath is the api_token file of the store.
func (s *Store) AdminTokenPath() string { return filepath.Join(s.dir, AdminTokenFile) }

// Create makes a token; tenant "" makes an admin token. The returned string
// is the only copy of the secret.
func (s *Store) Create(tenant, description string) (string, Token, error) {
	if tenant != "" {
		if err := config.CheckName("tenant", tenant); err != nil {
			return "", Token{}, fmt.Errorf("%w (a tenant is an instance id: its token reaches instances SERVICE:%s)", err, tenant)
		}
	}
	if len(description) > 200 {
		return "", Token{}, fmt.Errorf("description is %d characters long; at most 200", len(description))
	}
	id, err := randomHex(8)
	if err != nil {
		return "", Token{}, err
	}
	secret, err := randomHex(24)
	if err != nil {
		return "", Token{}, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", Token{}, err
	}
	r := &record{
		Token:  Token{ID: id, Tenant: tenant, Description: description, Created: s.now().UTC()},
		Params: s.params,
		Salt:   salt,
		Hash:   derive(secret, salt, s.params),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs[id] = r
	if err := s.saveLocked(); err != nil {
		delete(s.recs, id)
		return "", Token{}, err
	}
	return "ten_" + id + "_" + secret, r.Token, nil
}

// List returns every token, the api_token file's first, then by creation.
func (s *Store) List() []Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Token{{ID: FileTokenID, Description: "admin token in " + s.AdminTokenPath(), Created: s.fileMtime.UTC().Truncate(time.Second), LastUsed: s.fileUsed}}
	var rest []Token
	for _, r := range s.recs {
		rest = append(rest, r.Token)
	}
	sort.Slice(rest, func(i, j int) bool {
		if !rest[i].Created.Equal(rest[j].Created) {
			return rest[i].Created.Before(rest[j].Created)
		}
		return rest[i].ID < rest[j].ID
	})
	return append(out, rest...)
}

// Revoke deletes a token; requests with it fail from now on.
func (s *Store) Revoke(id string) (Token, error) {
	if id == FileTokenID {
		return Token{}, fmt.Errorf("%w: replace the file %s and restart ten serve to rotate it", ErrFileToken, s.AdminTokenPath())
	}
	id = normaliseID(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[id]
	if !ok {
		return Token{}, fmt.Errorf("%w %q (ten token list shows the ids)", ErrNotFound, id)
	}
	delete(s.recs, id)
	if err := s.saveLocked(); err != nil {
		s.recs[id] = r
		return Token{}, err
	}
	for k, v := range s.verified {
		if v == id {
			delete(s.verified, k)
		}
	}
	return r.Token, nil
}

// normaliseID accepts a whole token or its ten_<id> prefix where an id is
// expected, so a user may paste either.
func normaliseID(s string) string {
	if rest, ok := strings.CutPrefix(s, "ten_"); ok {
		id, _, _ := strings.Cut(rest, "_")
		return id
	}
	return s
}

// Verify returns the principal of a presented token, or ErrInvalid. It
// does no admission control of its own: a server checks tokens through a
// Guard, which bounds the argon2id work and locks out guessers.
func (s *Store) Verify(tok string) (Principal, error) {
	if p, ok := s.Cached(tok); ok {
		return p, nil
	}
	c, ok := s.Candidate(tok)
	if !ok {
		return Principal{}, ErrInvalid
	}
	return c.Check()
}

// Cached returns the principal of tok when no argon2id work is needed to
// know it: tok is the api_token file's token, or a token that verified
// before and was not revoked since (looked up by its SHA-256).
func (s *Store) Cached(tok string) (Principal, bool) {
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return Principal{}, false
	}
	sum := sha256.Sum256([]byte(tok))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if subtle.ConstantTimeCompare(sum[:], s.fileHash[:]) == 1 {
		s.fileUsed = now.UTC().Truncate(time.Second)
		return Principal{TokenID: FileTokenID}, true
	}
	if id, ok := s.verified[sum]; ok {
		if r, ok := s.recs[id]; ok {
			s.touchLocked(r, now)
			return Principal{TokenID: id, Tenant: r.Tenant}, true
		}
	}
	return Principal{}, false
}

// Candidate is a well-formed token that still has to be checked with
// argon2id (Check).
type Candidate struct {
	s      *Store
	tok    string
	ID     string // the token's id, which need not exist
	secret string
}

// Candidate parses tok; ok is false when it cannot be a token of the store
// (wrong shape), which needs no argon2id work to refuse.
func (s *Store) Candidate(tok string) (Candidate, bool) {
	tok = strings.TrimSpace(tok)
	id, secret, ok := splitToken(tok)
	if !ok {
		return Candidate{}, false
	}
	return Candidate{s: s, tok: tok, ID: id, secret: secret}, true
}

// Check derives the candidate's hash and compares it: one argon2id
// derivation (DefaultParams: 19 MiB, tens of milliseconds). An id that does
// not exist costs the same derivation, against a dummy hash, so the time an
// answer takes does not tell whether an id exists.
func (c Candidate) Check() (Principal, error) {
	s := c.s
	s.mu.Lock()
	r := s.recs[c.ID]
	var salt, want []byte
	var params Params
	if r != nil {
		salt, want, params = r.Salt, r.Hash, r.Params
	}
	s.mu.Unlock()
	if r == nil {
		salt, want, params = s.dummy()
	}
	// argon2id outside the lock: it takes tens of milliseconds.
	got := derive(c.secret, salt, params)
	if subtle.ConstantTimeCompare(got, want) != 1 || r == nil {
		return Principal{}, ErrInvalid
	}
	sum := sha256.Sum256([]byte(c.tok))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs[c.ID] != r { // revoked meanwhile
		return Principal{}, ErrInvalid
	}
	s.verified[sum] = c.ID
	s.touchLocked(r, now)
	return Principal{TokenID: c.ID, Tenant: r.Tenant}, nil
}

// dummy returns the salt, hash and parameters unknown ids are checked
// against: made once per store, with the parameters of new tokens.
func (s *Store) dummy() (salt, hash []byte, p Params) {
	s.dummyOnce.Do(func() {
		s.dummySalt = make([]byte, 16)
		_, _ = rand.Read(s.dummySalt)
		s.dummyHash = make([]byte, 32)
		_, _ = rand.Read(s.dummyHash)
	})
	return s.dummySalt, s.dummyHash, s.params
}

// touchLocked records a use; the file is rewritten at most once a minute
// for it, so busy clients do not turn every request into a disk write.
func (s *Store) touchLocked(r *record, now time.Time) {
	r.LastUsed = now.UTC().Truncate(time.Second)
	if now.Sub(s.saved) >= time.Minute {
		_ = s.saveLocked()
	}
}

// Flush writes pending last-used times.
func (s *Store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveLocked()
}

// splitToken parses ten_<16 hex id>_<secret>.
func splitToken(tok string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(tok, "ten_")
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 16 || secret == "" || len(secret) > 256 {
		return "", "", false
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", "", false
	}
	return id, secret, true
}

func derive(secret string, salt []byte, p Params) []byte {
	return argon2.IDKey([]byte(secret), salt, p.Time, p.Memory, p.Threads, 32)
}

func (s *Store) saveLocked() error {
	f := fileFormat{Version: 1}
	for _, r := range s.recs {
		f.Tokens = append(f.Tokens, r)
	}
	sort.Slice(f.Tokens, func(i, j int) bool { return f.Tokens[i].ID < f.Tokens[j].ID })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.dir, StoreFile)
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write token store %s: %w", path, err)
	}
	s.saved = s.now()
	return nil
}

// writeFileAtomic writes a 0600 file by rename, so a crash leaves the old
// or the new content, never half of it.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
