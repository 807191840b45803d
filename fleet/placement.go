package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Placement is the value under /ten/fleet/placement/<svc>:<id>: the node
// the instance should run on and the memory it was placed with.
type Placement struct {
	Node     string `json:"node"`
	MemoryMB int    `json:"memory_mb,omitempty"`
}

// NodeStatus is a live node as `ten nodes` shows it.
type NodeStatus struct {
	NodeInfo
	Lease clientv3.LeaseID `json:"lease"`
	// LeaseTTL is what is left of the lease on the etcd server.
	LeaseTTL time.Duration `json:"lease_ttl"`
	Load     Load          `json:"load"`
}

// maxListed bounds how many keys one listing reads, so that a runaway
// fleet cannot make a node read without end.
const maxListed = 100000

// Nodes lists the live nodes (those whose lease still holds their record)
// with the load their placements put on them, sorted by name.
func Nodes(ctx context.Context, cli *clientv3.Client) ([]NodeStatus, error) {
	nodes, _, _, err := view(ctx, cli)
	if err != nil {
		return nil, err
	}
	for i, n := range nodes {
		if n.Lease != 0 {
			if ttl, err := cli.TimeToLive(ctx, n.Lease); err == nil && ttl.TTL > 0 {
				nodes[i].LeaseTTL = time.Duration(ttl.TTL) * time.Second
			}
		}
	}
	return nodes, nil
}

// view reads the placements and the live nodes at one revision, and the
// nodes' load from those placements.
func view(ctx context.Context, cli *clientv3.Client) ([]NodeStatus, map[string]Placement, int64, error) {
	places, rev, err := placements(ctx, cli)
	if err != nil {
		return nil, nil, 0, err
	}
	nr, err := cli.Get(ctx, nodesDir, clientv3.WithPrefix(), clientv3.WithLimit(maxListed), clientv3.WithRev(rev))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("fleet: list nodes: %w", err)
	}
	load := map[string]Load{}
	for _, p := range places {
		l := load[p.Node]
		l.Instances++
		l.MemoryMB += p.MemoryMB
		load[p.Node] = l
	}
	out := make([]NodeStatus, 0, len(nr.Kvs))
	for _, kv := range nr.Kvs {
		var info NodeInfo
		if err := json.Unmarshal(kv.Value, &info); err != nil {
			return nil, nil, 0, fmt.Errorf("fleet: key %s: %w", kv.Key, err)
		}
		out = append(out, NodeStatus{NodeInfo: info, Lease: clientv3.LeaseID(kv.Lease), Load: load[info.Node]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, places, rev, nil
}

// Placements reads every placement, keyed by instance.
func Placements(ctx context.Context, cli *clientv3.Client) (map[string]Placement, error) {
	p, _, err := placements(ctx, cli)
	return p, err
}

func placements(ctx context.Context, cli *clientv3.Client) (map[string]Placement, int64, error) {
	r, err := cli.Get(ctx, placementDir, clientv3.WithPrefix(), clientv3.WithLimit(maxListed))
	if err != nil {
		return nil, 0, fmt.Errorf("fleet: list placements: %w", err)
	}
	out := make(map[string]Placement, len(r.Kvs))
	for _, kv := range r.Kvs {
		inst, ok := InstanceFromKey(string(kv.Key))
		if !ok {
			continue
		}
		var p Placement
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return nil, 0, fmt.Errorf("fleet: key %s: %w", kv.Key, err)
		}
		out[inst] = p
	}
	return out, r.Header.Revision, nil
}

// PlaceInstance places inst on a live node chosen by Place (or on want),
// in a transaction that succeeds only if inst is not placed yet and no
// placement changed since the view was read, so that two nodes placing at
// once cannot overfill a node; on such a race it reads again and retries.
// An instance already placed keeps its node (returned with no error).
func PlaceInstance(ctx context.Context, cli *clientv3.Client, inst string, memMB int, want string) (string, error) {
	if err := ValidInstance(inst); err != nil {
		return "", err
	}
	key := PlacementKey(inst)
	for attempt := 0; attempt < 10; attempt++ {
		nodes, places, rev, err := view(ctx, cli)
		if err != nil {
			return "", err
		}
		if p, ok := places[inst]; ok {
			return p.Node, nil
		}
		cands := make([]Candidate, len(nodes))
		for i, n := range nodes {
			cands[i] = Candidate{Node: n.Node, Capacity: n.Capacity, Load: n.Load}
		}
		node, err := Place(cands, memMB, want)
		if err != nil {
			return "", fmt.Errorf("place %s: %w", inst, err)
		}
		val, _ := json.Marshal(Placement{Node: node, MemoryMB: memMB})
		// No placement written since the view's revision: the prefix's
		// newest ModRevision is at most the view's.
		t, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
				clientv3.Compare(clientv3.ModRevision(placementDir).WithPrefix(), "<", rev+1)).
			Then(clientv3.OpPut(key, string(val))).
			Commit()
		if err != nil {
			return "", fmt.Errorf("fleet: place %s: %w", inst, err)
		}
		if t.Succeeded {
			return node, nil
		}
	}
	return "", fmt.Errorf("fleet: place %s: placements kept changing, gave up after 10 tries", inst)
}
