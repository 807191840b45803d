package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Move is one instance to place anew because its node is lost.
type Move struct {
	Instance string
	From     Placed
	To       string
}

// PlanMoves lists the instances placed on nodes that are not live (their
// lease ended) which may move, each with the live node Place picks for it;
// loads count the moves planned before it, in instance order, so that every
// node planning from the same view plans the same moves. movable says
// whether an instance may leave its node (a service that keeps local data
// may not, unless its config says so); an instance that fits nowhere stays.
func PlanMoves(v View, movable func(inst string) bool) []Move {
	load := map[string]Load{}
	for _, p := range v.Placements {
		if _, ok := v.Nodes[p.Node]; ok {
			l := load[p.Node]
			l.Instances++
			l.MemoryMB += p.MemoryMB
			load[p.Node] = l
		}
	}
	var lost []string
	for inst, p := range v.Placements {
		if _, ok := v.Nodes[p.Node]; !ok && movable(inst) {
			lost = append(lost, inst)
		}
	}
	sort.Strings(lost)
	var out []Move
	for _, inst := range lost {
		p := v.Placements[inst]
		cands := make([]Candidate, 0, len(v.Nodes))
		for name, n := range v.Nodes {
			cands = append(cands, Candidate{Node: name, Capacity: n.Capacity, Load: load[name]})
		}
		to, err := Place(cands, p.MemoryMB, "")
		if err != nil {
			continue
		}
		l := load[to]
		l.Instances++
		l.MemoryMB += p.MemoryMB
		load[to] = l
		out = append(out, Move{Instance: inst, From: p, To: to})
	}
	return out
}

// Reassign carries out a move: it writes the new placement only if the
// old one is unchanged since the view was read, so that of several nodes
// planning the same move exactly one writes it. moved is false when
// another node (or a user) changed the placement first.
func Reassign(ctx context.Context, cli *clientv3.Client, m Move) (moved bool, err error) {
	key := PlacementKey(m.Instance)
	val, _ := json.Marshal(Placement{Node: m.To, MemoryMB: m.From.MemoryMB})
	r, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", m.From.ModRev)).
		// The instance starts anew on the new node: a failed mark the lost
		// node's health loop set does not follow it (as a new spawn clears
		// one on a single server).
		Then(clientv3.OpPut(key, string(val)), clientv3.OpDelete(FailedKey(m.Instance))).
		Commit()
	if err != nil {
		return false, fmt.Errorf("fleet: move %s from node %s to %s: %w", m.Instance, m.From.Node, m.To, err)
	}
	return r.Succeeded, nil
}

// Unplace removes an instance's placement (ten stop): the node that runs it
// stops it and releases it. Its weight and failed mark go with it, as a
// single server forgets them when an instance is removed.
func Unplace(ctx context.Context, cli *clientv3.Client, inst string) (existed bool, err error) {
	if err := ValidInstance(inst); err != nil {
		return false, err
	}
	r, err := cli.Txn(ctx).Then(clientv3.OpDelete(PlacementKey(inst)), clientv3.OpDelete(WeightKey(inst)), clientv3.OpDelete(FailedKey(inst))).Commit()
	if err != nil {
		return false, fmt.Errorf("fleet: unplace %s: %w", inst, err)
	}
	return r.Responses[0].GetResponseDeleteRange().Deleted > 0, nil
}
