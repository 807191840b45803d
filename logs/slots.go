package logs

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/tenhq/ten/auth"
)

// Log stream slots: each open stream is a journalctl process. One tenant
// may hold MaxTenantStreams of them, all tenants together
// MaxStreams-AdminStreams, so that tenants can never take the last
// AdminStreams from an admin.
const (
	MaxStreams       = 64
	MaxTenantStreams = 8
	AdminStreams     = 8
)

// Slots counts open log streams per tenant and in all (see MaxStreams).
// The zero value is ready; it is safe for concurrent use.
type Slots struct {
	mu       sync.Mutex // mu guards the following
	total    int
	tenants  int            // streams held by tenant tokens
	byTenant map[string]int // tenant -> open streams
}

// Acquire takes a slot for p, or returns a nil release with the status
// (429: this tenant has its share; 503: ten has none left) and the reason.
func (st *Slots) Acquire(p auth.Principal) (release func(), status int, msg string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.byTenant == nil {
		st.byTenant = map[string]int{}
	}
	if p.Admin() {
		if st.total >= MaxStreams {
			return nil, http.StatusServiceUnavailable, fmt.Sprintf("all %d log streams are open; close one, or read GET /api/logs instead", MaxStreams)
		}
		st.total++
		return sync.OnceFunc(func() {
			st.mu.Lock()
			st.total--
			st.mu.Unlock()
		}), 0, ""
	}
	t := p.Tenant
	if st.byTenant[t] >= MaxTenantStreams {
		return nil, http.StatusTooManyRequests, fmt.Sprintf("tenant %q has %d log streams open, the most a tenant may; close one, or read GET /api/logs instead", t, MaxTenantStreams)
	}
	if st.tenants >= MaxStreams-AdminStreams || st.total >= MaxStreams {
		return nil, http.StatusServiceUnavailable, fmt.Sprintf("the %d log streams tenants may open are all open; try again later, or read GET /api/logs instead", MaxStreams-AdminStreams)
	}
	st.total++
	st.tenants++
	st.byTenant[t]++
	return sync.OnceFunc(func() {
		st.mu.Lock()
		st.total--
		st.tenants--
		if st.byTenant[t]--; st.byTenant[t] == 0 {
			delete(st.byTenant, t)
		}
		st.mu.Unlock()
	}), 0, ""
}
