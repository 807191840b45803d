// Package fleet is ten's experimental multi-node mode: several ten nodes
// share one etcd cluster, which records the nodes (each under its own
// lease, with its capacity), where each instance is placed, and which node
// owns (runs) it. Without a [fleet] table in tenement.toml nothing here
// runs and ten is the single-server manager it always was.
//
// The package keeps its pure logic (the key schema, placement by free
// capacity, the fencing deadline, the services fingerprint) apart from the
// etcd I/O (Session, Claim, Release, Nodes), so that the logic is unit
// tested on values and the I/O against a real etcd.
//
// # Never twice
//
// An instance may run only on the node that holds its owner key,
// /ten/fleet/owner/<service>:<id>. The key is written in a transaction
// that succeeds only when the key is absent (its CreateRevision is 0), and
// it is attached to the node's lease, so it vanishes when the lease ends.
// Two nodes racing to claim one instance: exactly one transaction succeeds.
//
// A node cut off from etcd cannot know when its lease ends on the server,
// but it can bound it from below: the server renews a lease no earlier than
// it receives the keep-alive, so a keep-alive sent at local time s that was
// answered with TTL t keeps the lease alive on the server until at least
// s+t. The session fences (stops every instance it owns) at s+t−margin
// unless a later keep-alive has moved the deadline on. The margin covers
// the time a stop takes (systemd's stop job) and clock-rate drift between
// the node and the etcd leader; etcd measures lease time on the leader's
// monotonic clock and, on a leader change, extends every lease by a full
// TTL, which only ever makes the server's end later. So by the time any
// other node can claim the instance (the owner key gone with the lease),
// the old node has already stopped it.
package fleet
