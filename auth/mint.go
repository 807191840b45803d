package auth

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// lockName is the lock file every writer of a data dir's token store holds.
const lockName = ".tokens.lock"

// Minted is a token made by Mint.
type Minted struct {
	Token
	// Secret is the token itself, shown once.
	Secret string `json:"token"`
	// AdminFile is the api_token file the token was also written to
	// (admin tokens only).
	AdminFile string `json:"admin_file,omitempty"`
}

// Mint makes a token in the store of dataDir without a server, as
// tenement's `token-gen` does: it works before `ten serve` ever ran, and a
// running one accepts the token at once (it reads the store again when it
// meets a token it does not know). An admin token is also written to the
// api_token file, which the CLI reads; the token that file held before
// stays valid (it is kept in the store as a record the list shows and
// revoke ends).
func Mint(dataDir, tenant, description string, o Options) (Minted, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return Minted{}, fmt.Errorf("data dir: %w", err)
	}
	s := newStore(dataDir, o)
	if tenant != "" {
		secret, tok, err := s.Create(tenant, description)
		return Minted{Token: tok, Secret: secret}, err
	}
	if len(description) > 200 {
		return Minted{}, fmt.Errorf("description is %d characters long; at most 200", len(description))
	}
	// The admin file changes too: hold the store's lock across both files.
	unlock, err := lockFile(filepath.Join(dataDir, lockName))
	if err != nil {
		return Minted{}, fmt.Errorf("lock token store in %s: %w", dataDir, err)
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadRecords(); err != nil {
		return Minted{}, err
	}
	id, secret, r, err := s.newRecord(tenant, description)
	if err != nil {
		return Minted{}, err
	}
	s.recs[id] = r
	path := filepath.Join(dataDir, AdminTokenFile)
	if old, err := os.ReadFile(path); err == nil {
		if prev := strings.TrimSpace(string(old)); prev != "" && !s.isRecordToken(prev) {
			sum := sha256.Sum256([]byte(prev))
			if _, known := s.legacy[sum]; !known {
				lid, err := randomHex(8)
				if err != nil {
					return Minted{}, err
				}
				created := s.now().UTC()
				if st, err := os.Stat(path); err == nil {
					created = st.ModTime().UTC()
				}
				s.recs[lid] = &record{Token: Token{ID: lid, Description: "former api_token file", Created: created}, SHA256: sum[:]}
			}
		}
	}
	if err := s.saveLocked(); err != nil {
		return Minted{}, err
	}
	tok := "ten_" + id + "_" + secret
	if err := writeFileAtomic(path, []byte(tok+"\n")); err != nil {
		return Minted{}, fmt.Errorf("write admin token %s: %w", path, err)
	}
	return Minted{Token: r.Token, Secret: tok, AdminFile: path}, nil
}

// isRecordToken reports whether tok is a ten_<id>_<secret> token of a
// record in the store (s.mu held).
func (s *Store) isRecordToken(tok string) bool {
	id, _, ok := splitToken(tok)
	return ok && s.recs[id] != nil
}
