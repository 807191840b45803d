package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Shared tokens: in a fleet the tokens made over the API live in etcd, so
// that a token made on one node works on every node. The store keeps them
// beside its own file's records: NewShared makes one (its record holds the
// argon2id hash and salt, never the secret), SetShared replaces the set
// the fleet has now, and a token leaves it (revoked on any node) when it
// leaves the fleet. Shared records are never written to tokens.json.

// NewShared makes a token like Create but stores nothing: it returns the
// secret (the only copy), the token, and the record to share, which
// SetShared or AddShared takes.
func (s *Store) NewShared(tenant, description string) (secret string, tok Token, rec []byte, err error) {
	if err := checkNew(tenant, description); err != nil {
		return "", Token{}, nil, err
	}
	id, sec, r, err := s.newRecord(tenant, description)
	if err != nil {
		return "", Token{}, nil, err
	}
	rec, err = json.Marshal(r)
	if err != nil {
		return "", Token{}, nil, err
	}
	return "ten_" + id + "_" + sec, r.Token, rec, nil
}

// parseShared reads a shared record and checks that it is whole and
// stored under its own id.
func parseShared(id string, b []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("shared token %s: %w", id, err)
	}
	if !r.complete() || r.ID != id {
		return nil, fmt.Errorf("shared token %s: the record is incomplete or names another id", id)
	}
	return &r, nil
}

// SetShared replaces the shared tokens with recs (token id → record).
// Records that do not parse are left out and returned as errors. A token
// that left the set stops working at once, as a revoked one does.
func (s *Store) SetShared(recs map[string][]byte) []error {
	var errs []error
	shared := make(map[string]*record, len(recs))
	for id, b := range recs {
		r, err := parseShared(id, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		shared[id] = r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range shared {
		// The same token as before keeps its record (a check under way
		// compares it, and its last use is known here only).
		if old := s.shared[id]; old != nil && bytes.Equal(old.Hash, r.Hash) && bytes.Equal(old.Salt, r.Salt) {
			shared[id] = old
		}
	}
	s.shared = shared
	s.sharedChangedLocked()
	return errs
}

// AddShared adds one shared record (the node that made it uses it at
// once, before its watch of the fleet shows it).
func (s *Store) AddShared(id string, b []byte) error {
	r, err := parseShared(id, b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shared == nil {
		s.shared = map[string]*record{}
	}
	if s.shared[id] == nil {
		s.shared[id] = r
	}
	s.sharedChangedLocked()
	return nil
}

// DropShared removes one shared token; it reports whether there was one.
func (s *Store) DropShared(id string) bool {
	id = normaliseID(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.shared[id]
	delete(s.shared, id)
	s.sharedChangedLocked()
	return ok
}

// IsShared reports whether id (or a whole token) names a shared token.
func (s *Store) IsShared(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.shared[normaliseID(id)]
	return ok
}

// sharedChangedLocked indexes the shared nodes' admin tokens by their
// SHA-256 and drops cached verifications of tokens that are neither in
// the file nor shared (s.mu held).
func (s *Store) sharedChangedLocked() {
	s.sharedSums = map[[32]byte]string{}
	for id, r := range s.shared {
		if len(r.SHA256) == sha256.Size {
			s.sharedSums[[32]byte(r.SHA256)] = id
		}
	}
	for k, id := range s.verified {
		if s.recordLocked(id) == nil {
			delete(s.verified, k)
		}
	}
}

// NodeFileToken returns the record that makes this store's api_token file
// token an admin token of every node of a fleet (a root on any node
// already has the whole fleet through that node's ten), and its id: it
// holds the token's SHA-256 only, as tokens.json does for a taken-over
// api_token file.
func (s *Store) NodeFileToken(node string) (id string, rec []byte, err error) {
	sum := sha256.Sum256([]byte("ten fleet node " + node))
	id = hex.EncodeToString(sum[:8])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fileHash == ([32]byte{}) {
		return "", nil, fmt.Errorf("no admin token file %s to share", s.AdminTokenPath())
	}
	r := record{Token: Token{ID: id, Description: "admin token of node " + node + " (its " + AdminTokenFile + " file)", Created: s.fileMtime.UTC().Truncate(time.Second)},
		SHA256: s.fileHash[:]}
	rec, err = json.Marshal(r)
	return id, rec, err
}

// recordLocked is the record of id, the file's or a shared one (s.mu held).
func (s *Store) recordLocked(id string) *record {
	if r := s.recs[id]; r != nil {
		return r
	}
	return s.shared[id]
}

// TokenID returns the id a whole token or its ten_<id> prefix names, and
// an id unchanged.
func TokenID(s string) string { return normaliseID(s) }
