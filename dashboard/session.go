package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"sync"
	"time"

	"github.com/tenhq/ten/auth"
)

// Session bounds: at most MaxSessions at once (the least recently used is
// dropped past it) and MaxSessionsPerToken signed in with one token (past
// it that token's least recently used is dropped, so that signing in
// again and again ends only one's own sessions, never the admin's or
// another tenant's), each ending SessionTTL after sign-in or SessionIdle
// after its last use.
const (
	MaxSessions         = 1000
	MaxSessionsPerToken = 16
	SessionTTL          = 12 * time.Hour
	SessionIdle         = time.Hour
)

type session struct {
	p       auth.Principal
	csrf    string
	created time.Time
	used    time.Time
}

// sessions is the server-side session store: the cookie holds only a
// random id.
type sessions struct {
	mu sync.Mutex // mu guards by
	by map[string]*session
}

func newSessions() *sessions { return &sessions{by: map[string]*session{}} }

func randomID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

func (s *sessions) create(p auth.Principal, now time.Time) (id string, se *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	same := func(se *session) bool { return se.p == p }
	for s.countLocked(same) >= MaxSessionsPerToken {
		s.dropOldestLocked(same)
	}
	for len(s.by) >= MaxSessions {
		s.dropOldestLocked(func(*session) bool { return true })
	}
	id = randomID()
	se = &session{p: p, csrf: randomID(), created: now, used: now}
	s.by[id] = se
	return id, se
}

func (s *sessions) countLocked(match func(*session) bool) int {
	n := 0
	for _, se := range s.by {
		if match(se) {
			n++
		}
	}
	return n
}

// dropOldestLocked drops the least recently used session that matches.
func (s *sessions) dropOldestLocked(match func(*session) bool) {
	var oldest string
	for k, se := range s.by {
		if match(se) && (oldest == "" || se.used.Before(s.by[oldest].used)) {
			oldest = k
		}
	}
	delete(s.by, oldest)
}

func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.by[id]
	if se == nil {
		return nil
	}
	if now.Sub(se.created) > SessionTTL || now.Sub(se.used) > SessionIdle {
		delete(s.by, id)
		return nil
	}
	se.used = now
	c := *se
	return &c
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	delete(s.by, id)
	s.mu.Unlock()
}

func (s *sessions) expireLocked(now time.Time) {
	for k, se := range s.by {
		if now.Sub(se.created) > SessionTTL || now.Sub(se.used) > SessionIdle {
			delete(s.by, k)
		}
	}
}

func sameToken(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
