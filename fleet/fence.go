package fleet

import "time"

// Deadline tracks, on the node's monotonic clock, the earliest time the
// node's lease may end on the etcd server, and from it when the node must
// have fenced. It is pure: the Session feeds it keep-alive results.
type Deadline struct {
	margin time.Duration
	end    time.Time // lease alive on the server until at least end
}

// NewDeadline starts a tracker for a lease granted with ttl by a request
// sent at sent; margin is how long before the lease's earliest end the
// node fences (the longest stop of its instances, plus clock drift).
func NewDeadline(sent time.Time, ttl, margin time.Duration) *Deadline {
	return &Deadline{margin: margin, end: sent.Add(ttl)}
}

// Renewed records a keep-alive sent at sent and answered with ttl. The
// server renewed the lease after it received the request, so the lease
// lives until at least sent+ttl; a late answer to an older request never
// moves the deadline back.
func (d *Deadline) Renewed(sent time.Time, ttl time.Duration) {
	if end := sent.Add(ttl); end.After(d.end) {
		d.end = end
	}
}

// FenceAt is when the node must begin stopping its instances unless a
// keep-alive moves the deadline on first.
func (d *Deadline) FenceAt() time.Time { return d.end.Add(-d.margin) }

// LeaseEnd is the earliest time the lease may end on the server.
func (d *Deadline) LeaseEnd() time.Time { return d.end }

// Timing is a fleet's lease TTL and fencing margin, with the keep-alive
// interval derived from them.
type Timing struct {
	TTL    time.Duration
	Margin time.Duration
}

// Defaults of Timing: a lost node's instances can be claimed elsewhere
// DefaultTTL after its last keep-alive; it has fenced DefaultMargin before.
const (
	DefaultTTL    = 10 * time.Second
	DefaultMargin = 4 * time.Second
)

// KeepAliveEvery is the interval between keep-alives: a third of the time
// the node may go without one before it fences, so that two lost in a row
// do not fence a healthy node.
func (t Timing) KeepAliveEvery() time.Duration { return (t.TTL - t.Margin) / 3 }

// Valid reports whether the timing leaves room to renew before fencing:
// etcd counts TTLs in whole seconds (at least 1), and the margin must be
// positive and shorter than the TTL.
func (t Timing) Valid() error {
	switch {
	case t.TTL < time.Second || t.TTL%time.Second != 0:
		return errTiming("lease_ttl must be a whole number of seconds, at least 1s")
	case t.Margin <= 0 || t.Margin >= t.TTL:
		return errTiming("fence_margin must be positive and shorter than lease_ttl")
	case t.KeepAliveEvery() < 100*time.Millisecond:
		return errTiming("lease_ttl - fence_margin must be at least 300ms")
	}
	return nil
}

type errTiming string

func (e errTiming) Error() string { return string(e) }
