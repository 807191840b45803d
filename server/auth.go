package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TokenFile is the admin token's file name in the data dir (tenement's name).
const TokenFile = "api_token"

// Auth checks bearer tokens. The server keeps only a hash of the admin token.
type Auth struct {
	adminHash [32]byte
	log       *slog.Logger

	mu       sync.Mutex
	failures int
	lockedTo time.Time
}

// LoadAuth reads {dataDir}/api_token, creating it (mode 0600) when missing.
func LoadAuth(dataDir string, log *slog.Logger) (*Auth, error) {
	path := filepath.Join(dataDir, TokenFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		tok := "ten_" + hex.EncodeToString(raw)
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write admin token %s: %w", path, err)
		}
		log.Info("created admin token", "file", path)
		b = []byte(tok)
	} else if err != nil {
		return nil, fmt.Errorf("read admin token %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("admin token file %s is empty", path)
	}
	return &Auth{adminHash: sha256.Sum256([]byte(tok)), log: log}, nil
}

const (
	maxFailures = 10
	lockout     = 5 * time.Second
)

// check returns an HTTP status and message when the request is not allowed.
func (a *Auth) check(r *http.Request) (int, string) {
	a.mu.Lock()
	if time.Now().Before(a.lockedTo) {
		a.mu.Unlock()
		return http.StatusTooManyRequests, "too many failed attempts; try again in a few seconds"
	}
	a.mu.Unlock()
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return http.StatusUnauthorized, "missing bearer token (use --token, TENEMENT_TOKEN or the api_token file in the data dir)"
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(sum[:], a.adminHash[:]) == 1 {
		a.mu.Lock()
		a.failures = 0
		a.mu.Unlock()
		return 0, ""
	}
	a.mu.Lock()
	a.failures++
	if a.failures >= maxFailures {
		a.failures = 0
		a.lockedTo = time.Now().Add(lockout)
	}
	a.mu.Unlock()
	return http.StatusUnauthorized, "invalid token"
}
