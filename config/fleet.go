package config

import (
	"fmt"
	"net/url"
	"path/filepath"
)

// Fleet is the [fleet] table: ten's experimental multi-node mode, in which
// nodes share state through etcd. Absent (no etcd_endpoints), ten is a
// single server and nothing of the fleet runs.
type Fleet struct {
	// EtcdEndpoints are the etcd cluster's client URLs
	// (http://host:2379, or https:// with TLS).
	EtcdEndpoints []string `toml:"etcd_endpoints" json:"etcd_endpoints,omitempty"`
	// Node is this node's name in the fleet, unique among live nodes.
	Node string `toml:"node" json:"node,omitempty"`
	// Addr is where other nodes reach this node's router (host:port).
	Addr string `toml:"addr" json:"addr,omitempty"`
	// LeaseTTL (seconds, default 10) is how long the node's etcd lease
	// outlives its last keep-alive: another node can take over its
	// instances that long after it was lost.
	LeaseTTL int `toml:"lease_ttl" json:"lease_ttl,omitempty"`
	// FenceMargin (seconds, default 4, less than lease_ttl): when etcd stops
	// answering, the node stops its instances this long before its lease
	// can end, so that an instance never runs on two nodes.
	FenceMargin int `toml:"fence_margin" json:"fence_margin,omitempty"`
	// MemoryMB is the memory the node offers to placement (0: not counted).
	MemoryMB int `toml:"memory_mb" json:"memory_mb,omitempty"`
	// MaxInstances is how many instances placement puts on the node at
	// most (0: no limit).
	MaxInstances int `toml:"max_instances" json:"max_instances,omitempty"`
	// CA is the PEM file of the CA that signs etcd's server certificates
	// (with https:// endpoints).
	CA string `toml:"ca" json:"ca,omitempty"`
	// Cert is the PEM client certificate the node shows etcd, when etcd
	// asks for one (with key).
	Cert string `toml:"cert" json:"cert,omitempty"`
	// Key is the PEM private key of cert.
	Key string `toml:"key" json:"key,omitempty"`
}

// Enabled reports whether the node is configured as part of a fleet.
func (f *Fleet) Enabled() bool { return len(f.EtcdEndpoints) > 0 }

// Defaults of the [fleet] table.
const (
	DefaultLeaseTTL    = 10
	DefaultFenceMargin = 4
)

func (f *Fleet) defaults() {
	if !f.Enabled() {
		return
	}
	if f.LeaseTTL == 0 {
		f.LeaseTTL = DefaultLeaseTTL
	}
	if f.FenceMargin == 0 {
		f.FenceMargin = DefaultFenceMargin
	}
}

// validate checks the [fleet] table; add reports a problem under a key.
func (f *Fleet) validate(add func(key, format string, a ...any)) {
	if !f.Enabled() {
		if f.Node != "" || f.Addr != "" || f.CA != "" || f.Cert != "" || f.Key != "" {
			add("fleet.etcd_endpoints", "must list the etcd cluster's client URLs when [fleet] is set")
		}
		return
	}
	if len(f.EtcdEndpoints) > 32 {
		add("fleet.etcd_endpoints", "at most 32 endpoints, got %d", len(f.EtcdEndpoints))
	}
	tls := false
	for _, e := range f.EtcdEndpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("fleet.etcd_endpoints", "%q: want http://host:port or https://host:port", e)
			continue
		}
		tls = tls || u.Scheme == "https"
	}
	if err := validNode(f.Node); err != nil {
		add("fleet.node", "%v", err)
	}
	if f.LeaseTTL < 2 || f.LeaseTTL > 600 {
		add("fleet.lease_ttl", "must be 2 to 600 seconds, got %d", f.LeaseTTL)
	}
	if f.FenceMargin < 1 || f.FenceMargin >= f.LeaseTTL {
		add("fleet.fence_margin", "must be at least 1 second and shorter than lease_ttl (%d), got %d", f.LeaseTTL, f.FenceMargin)
	}
	if f.MemoryMB < 0 {
		add("fleet.memory_mb", "must not be negative (0: not counted), got %d", f.MemoryMB)
	}
	if f.MaxInstances < 0 {
		add("fleet.max_instances", "must not be negative (0: no limit), got %d", f.MaxInstances)
	}
	if (f.Cert == "") != (f.Key == "") {
		add("fleet.cert", "cert and key go together")
	}
	for key, p := range map[string]string{"fleet.ca": f.CA, "fleet.cert": f.Cert, "fleet.key": f.Key} {
		if p != "" && !filepath.IsAbs(p) {
			add(key, "must be an absolute path, got %q", p)
		}
	}
	if !tls && (f.CA != "" || f.Cert != "") {
		add("fleet.ca", "TLS files are set but no etcd endpoint is https://")
	}
}

// validNode checks a node name: 1 to 128 of [a-z0-9-_.] (one etcd key
// segment, a DNS-safe label).
func validNode(node string) error {
	if node == "" || len(node) > 128 {
		return fmt.Errorf("node name %q: want 1 to 128 characters", node)
	}
	for _, r := range node {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("node name %q: character %q not in [a-z0-9-_.]", node, r)
		}
	}
	return nil
}

// KeepsData reports whether the service keeps data on its node's disk
// that a fleet cannot move: it has storage_quota_mb, or its file sets
// storage_persist = true. (storage_persist defaults to true for
// tenement's sake, but a service that never asked for storage is taken
// as stateless.)
func (s *Service) KeepsData() bool {
	return s.StorageQuotaMB > 0 || (s.persistSet && s.StoragePersist != nil && *s.StoragePersist)
}

// MovesOnNodeLoss reports whether a fleet places the service's instances
// on a live node when their node is lost: stateless services do by
// default, services that keep data only with fleet_move = true.
func (s *Service) MovesOnNodeLoss() bool { return !s.KeepsData() || s.FleetMove }
