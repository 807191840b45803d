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
	"bytes"
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
	Params Params `json:"argon2id,omitzero"`
	Salt   []byte `json:"salt,omitempty"`
	Hash   []byte `json:"hash,omitempty"`
	// SHA256 replaces Params, Salt and Hash for an admin token taken over
	// from an api_token file when token-gen wrote a new one there: such a
	// token (tenement's, or one ten serve made) has no id to find a record
	// by, and is random enough that a plain SHA-256 is safe at rest.
	SHA256 []byte `json:"sha256,omitempty"`
}

func (r *record) complete() bool {
	if r == nil || r.ID == "" {
		return false
	}
	if len(r.SHA256) > 0 {
		return len(r.SHA256) == sha256.Size && r.Tenant == ""
	}
	return len(r.Hash) > 0 && len(r.Salt) > 0 && r.Params.Time != 0 && r.Params.Memory != 0 && r.Params.Threads != 0
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
	// shared are the fleet's tokens (shared.go), kept in etcd, not in
	// tokens.json.
	shared map[string]*record
	// sharedSums maps the SHA-256 of the fleet nodes' admin tokens (shared
	// records with SHA256) to their id.
	sharedSums map[[32]byte]string
	// legacy maps the SHA256 of taken-over api_token tokens to their id.
	legacy map[[32]byte]string
	// verified maps sha256(token) of tokens that passed argon2id to their id.
	verified map[[32]byte]string
	saved    time.Time
	// storeStat and fileStat are what tokens.json and api_token looked
	// like when last read: another process (an offline `ten token-gen`)
	// changes them, and a token the store does not know makes it look.
	storeStat, fileStat fileID

	// dummyOnce makes the hash unknown ids are checked against (dummy).
	dummyOnce sync.Once
	dummySalt []byte
	dummyHash []byte
}

// fileID tells whether a file changed since it was read.
type fileID struct {
	ino, size int64
	mtime     time.Time
}

func statID(path string) fileID {
	st, err := os.Stat(path)
	if err != nil {
		return fileID{}
	}
	return fileID{ino: inode(st), size: st.Size(), mtime: st.ModTime()}
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
	s := newStore(dataDir, o)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadFileToken(true); err != nil {
		return nil, err
	}
	if err := s.loadRecords(); err != nil {
		return nil, err
	}
	return s, nil
}

func newStore(dataDir string, o Options) *Store {
	s := &Store{dir: dataDir, params: o.Params, now: o.Now, recs: map[string]*record{}, legacy: map[[32]byte]string{}, verified: map[[32]byte]string{}}
	if s.params == (Params{}) {
		s.params = DefaultParams
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// loadRecords reads tokens.json into s.recs (s.mu held). Last-used times
// this process knows and the file does not yet are kept.
func (s *Store) loadRecords() error {
	path := filepath.Join(s.dir, StoreFile)
	st := statID(path)
	b, err := os.ReadFile(path)
	recs := map[string]*record{}
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read token store %s: %w", path, err)
	default:
		var f fileFormat
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("token store %s: %w (fix or remove the file; removing it revokes every token but the api_token file's)", path, err)
		}
		for _, r := range f.Tokens {
			if !r.complete() {
				return fmt.Errorf("token store %s: a token record is incomplete (fix or remove it)", path)
			}
			if old := s.recs[r.ID]; old != nil && old.LastUsed.After(r.LastUsed) {
				r.LastUsed = old.LastUsed
			}
			recs[r.ID] = r
		}
	}
	s.recs = recs
	s.legacy = map[[32]byte]string{}
	for id, r := range recs {
		if len(r.SHA256) > 0 {
			s.legacy[[32]byte(r.SHA256)] = id
		}
	}
	for k, id := range s.verified {
		if _, ok := recs[id]; !ok && s.shared[id] == nil {
			delete(s.verified, k)
		}
	}
	s.storeStat = st
	return nil
}

// reloadIfChanged reads the files again when another process changed them
// since (s.mu held); it reports whether anything was read.
func (s *Store) reloadIfChanged() bool {
	changed := false
	if st := statID(filepath.Join(s.dir, AdminTokenFile)); st != s.fileStat {
		if s.loadFileToken(false) == nil {
			changed = true
		}
	}
	if st := statID(filepath.Join(s.dir, StoreFile)); st != s.storeStat {
		if s.loadRecords() == nil {
			changed = true
		}
	}
	return changed
}

// loadFileToken reads api_token, creating it when missing and create is set.
func (s *Store) loadFileToken(create bool) error {
	path := filepath.Join(s.dir, AdminTokenFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		tok, err := randomHex(24)
		if err != nil {
			return err
		}
		tok = "ten_" + tok
		if err := writeFileAtomic(path, []byte(tok+"\n")); err != nil {
			return fmt.Errorf("write admin token %s: %w", path, err)
		}
		b = []byte(tok)
	} else if errors.Is(err, os.ErrNotExist) {
		s.fileHash = [32]byte{}
		s.fileStat = fileID{}
		return nil
	} else if err != nil {
		return fmt.Errorf("read admin token %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return fmt.Errorf("admin token file %s is empty (remove it and ten serve writes a new one)", path)
	}
	s.fileHash = sha256.Sum256([]byte(tok))
	s.fileStat = statID(path)
	s.fileMtime = s.fileStat.mtime
	return nil
}

// AdminTokenPath is the api_token file of the store.
func (s *Store) AdminTokenPath() string { return filepath.Join(s.dir, AdminTokenFile) }

// Create makes a token; tenant "" makes an admin token. The returned string
// is the only copy of the secret.
func (s *Store) Create(tenant, description string) (string, Token, error) {
	if err := checkNew(tenant, description); err != nil {
		return "", Token{}, err
	}
	id, secret, r, err := s.newRecord(tenant, description)
	if err != nil {
		return "", Token{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.update(func() error { s.recs[id] = r; return nil }); err != nil {
		return "", Token{}, err
	}
	return "ten_" + id + "_" + secret, r.Token, nil
}

// checkNew checks a new token's tenant and description.
func checkNew(tenant, description string) error {
	if tenant != "" {
		if err := config.CheckID("tenant", tenant); err != nil {
			return fmt.Errorf("%w (a tenant is an instance id: its token reaches instances SERVICE:%s)", err, tenant)
		}
	}
	if len(description) > 200 {
		return fmt.Errorf("description is %d characters long; at most 200", len(description))
	}
	return nil
}

// newRecord makes a token's id, secret and hashed record (argon2id: the
// slow part, done before any lock is taken).
func (s *Store) newRecord(tenant, description string) (id, secret string, r *record, err error) {
	if id, err = randomHex(8); err != nil {
		return "", "", nil, err
	}
	if secret, err = randomHex(24); err != nil {
		return "", "", nil, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", "", nil, err
	}
	r = &record{
		Token:  Token{ID: id, Tenant: tenant, Description: description, Created: s.now().UTC()},
		Params: s.params,
		Salt:   salt,
		Hash:   derive(secret, salt, s.params),
	}
	return id, secret, r, nil
}

// update changes the store on disk under its lock (s.mu held): it reads
// what other processes wrote meanwhile, applies change, and writes the
// file back, so two writers at once (ten serve and an offline `ten
// token-gen`) never lose each other's tokens.
func (s *Store) update(change func() error) error {
	unlock, err := lockFile(filepath.Join(s.dir, lockName))
	if err != nil {
		return fmt.Errorf("lock token store in %s: %w", s.dir, err)
	}
	defer unlock()
	if err := s.loadRecords(); err != nil {
		return err
	}
	if change != nil {
		if err := change(); err != nil {
			return err
		}
	}
	return s.saveLocked()
}

// List returns every token, the api_token file's first, then by creation,
// including those another process (an offline `ten token-gen`) wrote since
// the store was last read.
func (s *Store) List() []Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reloadIfChanged()
	out := []Token{{ID: FileTokenID, Description: "admin token in " + s.AdminTokenPath(), Created: s.fileMtime.UTC().Truncate(time.Second), LastUsed: s.fileUsed}}
	var rest []Token
	for _, r := range s.recs {
		rest = append(rest, r.Token)
	}
	for id, r := range s.shared {
		if s.recs[id] == nil {
			rest = append(rest, r.Token)
		}
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
	var r *record
	err := s.update(func() error {
		var ok bool
		if r, ok = s.recs[id]; !ok {
			return fmt.Errorf("%w %q (ten token list shows the ids)", ErrNotFound, id)
		}
		delete(s.recs, id)
		return nil
	})
	if err != nil {
		return Token{}, err
	}
	for k, v := range s.verified {
		if v == id {
			delete(s.verified, k)
		}
	}
	for k, v := range s.legacy {
		if v == id {
			delete(s.legacy, k)
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
		if r := s.recordLocked(id); r != nil {
			s.touchLocked(r, now)
			return Principal{TokenID: id, Tenant: r.Tenant}, true
		}
	}
	if id, ok := s.legacy[sum]; ok {
		s.touchLocked(s.recs[id], now)
		return Principal{TokenID: id}, true
	}
	if id, ok := s.sharedSums[sum]; ok {
		s.shared[id].LastUsed = now.UTC().Truncate(time.Second)
		return Principal{TokenID: id}, true
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
	r := s.recordLocked(c.ID)
	if r == nil && s.reloadIfChanged() {
		// Another process (an offline `ten token-gen`) wrote a token
		// since: it works at once, without a restart of ten serve.
		r = s.recordLocked(c.ID)
	}
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
	// Revoked meanwhile? A reload of the store (a last-used save, a token
	// made elsewhere) makes new records: compare what they hold.
	cur := s.recordLocked(c.ID)
	if cur == nil || !bytes.Equal(cur.Hash, r.Hash) || cur.Tenant != r.Tenant {
		return Principal{}, ErrInvalid
	}
	s.verified[sum] = c.ID
	s.touchLocked(cur, now)
	return Principal{TokenID: c.ID, Tenant: cur.Tenant}, nil
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
		_ = s.update(nil)
	}
}

// Flush writes pending last-used times.
func (s *Store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.update(nil)
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
	s.storeStat = statID(path)
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
