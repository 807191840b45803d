package server

import (
	"sync"

	"github.com/tenhq/ten/units"
)

// flagCache holds one yes/no per instance that ten reads from systemd once
// (whether its service runs the standby waiter, whether it takes ten's
// READY=1), until the instance is made again (forget).
type flagCache struct {
	mu sync.Mutex
	m  map[units.Instance]bool
}

// get returns inst's flag, reading it with read the first time; a read that
// fails (ok false) is not kept and get returns fallback.
func (c *flagCache) get(inst units.Instance, fallback bool, read func() (flag, ok bool)) bool {
	c.mu.Lock()
	v, known := c.m[inst]
	c.mu.Unlock()
	if known {
		return v
	}
	v, ok := read()
	if !ok {
		return fallback
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[units.Instance]bool{}
	}
	c.m[inst] = v
	c.mu.Unlock()
	return v
}

// forget drops inst's flag.
func (c *flagCache) forget(inst units.Instance) {
	c.mu.Lock()
	delete(c.m, inst)
	c.mu.Unlock()
}
