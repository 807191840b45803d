package fleet

import (
	"errors"
	"fmt"
	"sort"
)

// Capacity is what a node offers to instances.
type Capacity struct {
	// MemoryMB is the memory instances may use together (0: not counted).
	MemoryMB int `json:"memory_mb"`
	// Instances is how many instances the node runs at most (0: no limit).
	Instances int `json:"instances"`
}

// Load is what a node's placed instances take of its capacity.
type Load struct {
	MemoryMB  int `json:"memory_mb"`
	Instances int `json:"instances"`
}

// Candidate is a live node as placement sees it.
type Candidate struct {
	Node     string
	Capacity Capacity
	Load     Load
}

// ErrNoCapacity is returned when no live node has room for an instance.
var ErrNoCapacity = errors.New("no live node has room")

// fits reports whether an instance needing memMB fits on c.
func (c Candidate) fits(memMB int) bool {
	if c.Capacity.Instances > 0 && c.Load.Instances+1 > c.Capacity.Instances {
		return false
	}
	if c.Capacity.MemoryMB > 0 && c.Load.MemoryMB+memMB > c.Capacity.MemoryMB {
		return false
	}
	return true
}

// free is the share of c left after placing an instance of memMB, in
// [0,1]: the smaller of the memory and instance-count shares, with an
// uncounted dimension counting as fully free.
func (c Candidate) free(memMB int) float64 {
	share := 1.0
	if c.Capacity.MemoryMB > 0 {
		share = min(share, float64(c.Capacity.MemoryMB-c.Load.MemoryMB-memMB)/float64(c.Capacity.MemoryMB))
	}
	if c.Capacity.Instances > 0 {
		share = min(share, float64(c.Capacity.Instances-c.Load.Instances-1)/float64(c.Capacity.Instances))
	}
	return share
}

// Place picks the node for an instance needing memMB of memory: the one
// with the largest share of its capacity still free after placing it, ties
// broken by fewer instances, then by name, so that every node computing a
// placement from the same view picks the same node. want, when set (ten
// spawn --node), must be a candidate with room.
func Place(cands []Candidate, memMB int, want string) (string, error) {
	if want != "" {
		for _, c := range cands {
			if c.Node != want {
				continue
			}
			if !c.fits(memMB) {
				return "", fmt.Errorf("node %s: %w (memory %d+%d of %d MB, instances %d of %d)",
					want, ErrNoCapacity, c.Load.MemoryMB, memMB, c.Capacity.MemoryMB, c.Load.Instances, c.Capacity.Instances)
			}
			return want, nil
		}
		return "", fmt.Errorf("node %s: not a live node of the fleet", want)
	}
	var fit []Candidate
	for _, c := range cands {
		if c.fits(memMB) {
			fit = append(fit, c)
		}
	}
	if len(fit) == 0 {
		return "", fmt.Errorf("%w (%d live nodes, instance needs %d MB)", ErrNoCapacity, len(cands), memMB)
	}
	sort.Slice(fit, func(i, j int) bool {
		a, b := fit[i], fit[j]
		if fa, fb := a.free(memMB), b.free(memMB); fa != fb {
			return fa > fb
		}
		if a.Load.Instances != b.Load.Instances {
			return a.Load.Instances < b.Load.Instances
		}
		return a.Node < b.Node
	})
	return fit[0].Node, nil
}
