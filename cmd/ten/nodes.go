package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tenhq/ten/fleet"
)

// NodesCmd is `ten nodes`: the fleet's live nodes, their leases and load,
// read from etcd (the [fleet] table of the config). It changes nothing.
type NodesCmd struct{}

// Run lists the nodes.
func (c *NodesCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	if !cfg.Fleet.Enabled() {
		return fmt.Errorf("%s: no [fleet] table (etcd_endpoints): this is a single server", cfg.Path)
	}
	cli, err := fleet.Connect(cfg.Fleet)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nodes, err := fleet.Nodes(ctx, cli)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", strings.Join(cfg.Fleet.EtcdEndpoints, ","), err)
	}
	if g.JSON {
		return json.NewEncoder(stdout).Encode(nodes)
	}
	return fleet.WriteNodes(stdout, nodes)
}
