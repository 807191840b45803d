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

// Log read slots (GET /api/logs): each read runs a journalctl process and
// holds up to journal.MaxReadBytes of entries until it answers. One tenant
// may run MaxTenantReads at once, all tenants together MaxReads-AdminReads.
const (
	MaxReads       = 16
	MaxTenantReads = 2
	AdminReads     = 4
)

// Slots counts open log streams (or reads) per tenant and in all. The
// zero value bounds streams (MaxStreams, MaxTenantStreams, AdminStreams);
// NewReadSlots returns one that bounds reads. It is safe for concurrent
// use.
type Slots struct {
	reads    bool       // the read bounds, not the stream bounds
	mu       sync.Mutex // mu guards the following
	total    int
	tenants  int            // slots held by tenant tokens
	byTenant map[string]int // tenant -> slots held
}

// NewReadSlots returns Slots bounding log reads (MaxReads, MaxTenantReads,
// AdminReads).
func NewReadSlots() *Slots { return &Slots{reads: true} }

func (st *Slots) bounds() (max, perTenant, admin int, what, instead string) {
	if st.reads {
		return MaxReads, MaxTenantReads, AdminReads, "log reads", "try again when one has answered"
	}
	return MaxStreams, MaxTenantStreams, AdminStreams, "log streams", "close one, or read GET /api/logs instead"
}

// Acquire takes a slot for p, or returns a nil release with the status
// (429: this tenant has its share; 503: ten has none left) and the reason.
func (st *Slots) Acquire(p auth.Principal) (release func(), status int, msg string) {
	max, perTenant, admin, what, instead := st.bounds()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.byTenant == nil {
		st.byTenant = map[string]int{}
	}
	if p.Admin() {
		if st.total >= max {
			return nil, http.StatusServiceUnavailable, fmt.Sprintf("all %d %s are open; %s", max, what, instead)
		}
		st.total++
		return sync.OnceFunc(func() {
			st.mu.Lock()
			st.total--
			st.mu.Unlock()
		}), 0, ""
	}
	t := p.Tenant
	if st.byTenant[t] >= perTenant {
		return nil, http.StatusTooManyRequests, fmt.Sprintf("tenant %q has %d %s open, the most a tenant may; %s", t, perTenant, what, instead)
	}
	if st.tenants >= max-admin || st.total >= max {
		return nil, http.StatusServiceUnavailable, fmt.Sprintf("the %d %s tenants may open are all open; try again later", max-admin, what)
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
