package acct

import "time"

// PeerMark is the SO_MARK ten puts on its own TCP connections to an
// instance (the router's requests to a PORT app, health probes, readiness
// polls): their traffic is counted in the bytes and packets but is not
// activity (Stats.LastActivity), since the router counts its own requests
// and a health probe must not keep an idle instance awake. It is "ten" in
// ASCII; a host whose firewall marks loopback packets with it would hide
// that traffic from the idle reaper too.
const PeerMark = 0x74656e

// Stats is the activity of one cgroup since it was first attached. The
// counters only grow; a cgroup that is removed (systemd removes a stopped
// service's cgroup) and created again starts from zero with a new id.
type Stats struct {
	RxBytes, TxBytes     uint64 // IP packet bytes received and sent
	RxPackets, TxPackets uint64
	// Connections counts TCP connections established, accepted or opened.
	Connections uint64
	// OpenConnections is how many accepted TCP connections are open now
	// (connections the app opened itself are not counted).
	OpenConnections int64
	// LastActivity is when the last packet was seen, other than those to and
	// from ten itself (PeerMark) and the SYN-ACKs of a listener; zero when
	// none was.
	LastActivity time.Time
	// LastInbound is LastActivity without the connections the instance
	// opened itself (a database, an API it polls) and without packets that
	// are not TCP (its DNS lookups): the activity of a service with
	// idle_activity = "inbound".
	LastInbound time.Time
}

// add sums two cgroups' activity, as for an instance whose traffic is split
// between its socket unit's and its service's cgroup.
func (s Stats) add(o Stats) Stats {
	s.RxBytes += o.RxBytes
	s.TxBytes += o.TxBytes
	s.RxPackets += o.RxPackets
	s.TxPackets += o.TxPackets
	s.Connections += o.Connections
	s.OpenConnections += o.OpenConnections
	if o.LastActivity.After(s.LastActivity) {
		s.LastActivity = o.LastActivity
	}
	if o.LastInbound.After(s.LastInbound) {
		s.LastInbound = o.LastInbound
	}
	return s
}
