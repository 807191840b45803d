package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/client"
	"github.com/tenhq/ten/units"
)

// DeployCmd is `ten deploy SERVICE:VERSION`.
type DeployCmd struct {
	Instance string `arg:"" help:"Version to run, SERVICE:VERSION (e.g. api:v2); the version is the instance id. One that exists already is woken if it sleeps and given the weight once healthy."`
	Version  string `name:"version" help:"tenement's older form: ten deploy SERVICE --version VERSION."`
	Weight   int    `short:"w" default:"100" help:"Routing weight (0-100) the new version gets once healthy."`
	Timeout  int    `default:"30" help:"Seconds to wait for its health check to pass; if it does not, a new version is removed (one that existed stays as it was) and nothing else changes."`
	Replace  bool   `help:"After the new version is healthy, take the service's other instances out of the rotation, let their requests finish, and remove them."`
}

// Run deploys: spawn with weight 0 (or wake the version that exists), wait
// for health, give it its weight.
func (c *DeployCmd) Run(ctx context.Context, g *Globals) error {
	name, err := olderForm("deploy", c.Instance, "version", "VERSION", c.Version)
	if err != nil {
		return err
	}
	inst, err := units.ParseInstance(name)
	if err != nil {
		return err
	}
	if c.Weight < 0 || c.Weight > 100 {
		return fmt.Errorf("--weight %d: must be 0..100", c.Weight)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("--timeout %d: must be > 0 seconds", c.Timeout)
	}
	cl := g.client()
	// The server answers after the health wait and the drain.
	cl.HTTP.Timeout = time.Duration(c.Timeout)*time.Second + 5*time.Minute
	req := apitype.DeployRequest{Service: inst.Service, Version: inst.ID, Weight: &c.Weight, Timeout: c.Timeout, Replace: c.Replace}
	if !g.JSON {
		// tenement's first lines, shown while the server waits for health.
		fmt.Fprintf(stdout, "Deploying %s with weight %d\nWaiting for health check (timeout: %ds)...\n", inst, c.Weight, c.Timeout)
		if err := stdout.Flush(); err != nil {
			return err
		}
	}
	var res apitype.DeployResult
	if err := cl.Do(ctx, "POST", "/api/deploy", req, &res); err != nil {
		return err
	}
	if g.JSON {
		return printJSON(res)
	}
	// tenement's lines, which its users' scripts read, with the wait.
	fmt.Fprintf(stdout, "Deployed %s (healthy after %.1fs)\nWeight: %d\nStatus: %s\n", res.Instance, res.HealthyAfter, res.Weight, res.Status)
	if res.Existed {
		fmt.Fprintf(stdout, "%s existed already: it was not re-made (ten restart %s restarts it)\n", res.Instance, res.Instance)
	}
	if len(res.Replaced) > 0 {
		fmt.Fprintf(stdout, "drained and removed %s\n", strings.Join(res.Replaced, ", "))
	}
	return nil
}

// RouteCmd is `ten route SERVICE --from A --to B`.
type RouteCmd struct {
	Service string `arg:"" help:"Service whose traffic moves."`
	From    string `required:"" help:"Instance id that gives up its weight (gets 0)."`
	To      string `required:"" help:"Instance id that takes over From's traffic: its weight becomes its own plus From's (at most 100; 100 if both were 0)."`
}

// Run moves the traffic in one step on the server.
func (c *RouteCmd) Run(ctx context.Context, g *Globals) error {
	var res apitype.RouteResult
	if err := g.client().Do(ctx, "POST", "/api/route", apitype.RouteRequest{Service: c.Service, From: c.From, To: c.To}, &res); err != nil {
		return err
	}
	if g.JSON {
		return printJSON(res)
	}
	// tenement's lines, which its users' scripts read.
	fmt.Fprintf(stdout, "Routed traffic: %s -> %s\n  %s weight = %d\n  %s weight = %d\n", res.From, res.To, res.From, 0, res.To, res.Weight)
	return nil
}

// HealthCmd is `ten health SERVICE:ID`.
type HealthCmd struct {
	Instance string `arg:"" help:"Instance, SERVICE:ID."`
}

// Run prints the instance's health.
func (c *HealthCmd) Run(ctx context.Context, g *Globals) error {
	if _, err := units.ParseInstance(c.Instance); err != nil {
		return err
	}
	var h apitype.Health
	if err := g.client().Do(ctx, "GET", client.InstancePath(c.Instance)+"/health", nil, &h); err != nil {
		return err
	}
	if g.JSON {
		return printJSON(h)
	}
	fmt.Fprintf(stdout, "%s: %s", h.Instance, h.Health)
	if h.Detail != "" {
		fmt.Fprintf(stdout, " (%s)", h.Detail)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "  state:    %s\n", h.State)
	fmt.Fprintf(stdout, "  check:    %s", h.Check)
	if !h.LastCheck.IsZero() {
		fmt.Fprintf(stdout, ", last %s ago", time.Since(h.LastCheck).Round(time.Second))
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "  restarts: %d within the last %ds (max_restarts %d)\n", h.RestartsInWindow, h.RestartWindowSec, h.MaxRestarts)
	for _, r := range h.Restarts {
		fmt.Fprintf(stdout, "    %s  %s\n", r.At.Local().Format(time.DateTime), r.Reason)
	}
	if !h.NextRestart.IsZero() {
		fmt.Fprintf(stdout, "  next restart in %s (backoff %dms)\n", time.Until(h.NextRestart).Round(100*time.Millisecond), h.BackoffMs)
	}
	if h.Failed != "" {
		fmt.Fprintf(stdout, "  failed: %s\n  stopped until `ten restart %s`\n", h.Failed, h.Instance)
	}
	return nil
}
