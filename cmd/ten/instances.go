package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/client"
	"github.com/tenhq/ten/units"
)

// SpawnCmd is `ten spawn SERVICE:ID`.
type SpawnCmd struct {
	Instance string `arg:"" help:"Instance to create, SERVICE:ID (e.g. api:prod)."`
	ID       string `short:"i" name:"id" help:"tenement's older form: ten spawn SERVICE --id ID."`
	Node     string `help:"Fleet mode: place the instance on this node (default: the live node with the most free capacity)."`
}

// spawnName is the instance SERVICE:ID from the argument, or from SERVICE
// and --id (tenement's older form).
func spawnName(arg, id string) (string, error) {
	return olderForm("spawn", arg, "id", "ID", id)
}

// olderForm is the instance SERVICE:X from the argument, or from SERVICE
// and --flag X (tenement's older forms: spawn --id, deploy --version).
func olderForm(verb, arg, flag, what, val string) (string, error) {
	if val == "" {
		return arg, nil
	}
	if strings.Contains(arg, ":") {
		return "", fmt.Errorf("%s %s --%s %s: give SERVICE:%s or SERVICE --%s %s, not both", verb, arg, flag, val, what, flag, what)
	}
	return arg + ":" + val, nil
}

// Run asks the server to spawn the instance.
func (c *SpawnCmd) Run(ctx context.Context, g *Globals) error {
	name, err := spawnName(c.Instance, c.ID)
	if err != nil {
		return err
	}
	c.Instance = name
	if _, err := units.ParseInstance(c.Instance); err != nil {
		return err
	}
	var row apitype.Row
	body := map[string]string{"instance": c.Instance}
	if c.Node != "" {
		body["node"] = c.Node
	}
	if err := g.client().Do(ctx, "POST", "/api/instances/spawn", body, &row); err != nil {
		return err
	}
	head := ""
	if !g.JSON {
		// tenement's line, which its users' scripts look for.
		head = fmt.Sprintf("Spawned %s\n", row.Instance)
		if row.Existed {
			head = fmt.Sprintf("Spawned %s (it existed already: left as it was; ten restart %s restarts it)\n", row.Instance, row.Instance)
		}
		if row.Address != "" {
			// tenement's second line: where a local client reaches the
			// app directly (not through the router's Host routing).
			head += fmt.Sprintf("Listening on %s\n", row.Address)
		}
	}
	return printRows(g, head, []apitype.Row{row})
}

// StopCmd is `ten stop SERVICE:ID`.
type StopCmd struct {
	Instance string `arg:"" help:"Instance to remove, SERVICE:ID."`
}

// Run asks the server to remove the instance.
func (c *StopCmd) Run(ctx context.Context, g *Globals) error {
	if _, err := units.ParseInstance(c.Instance); err != nil {
		return err
	}
	// The server answers 204 with no body, as tenement's does.
	if err := g.client().Do(ctx, "DELETE", client.InstancePath(c.Instance), nil, nil); err != nil {
		return err
	}
	if g.JSON {
		return printJSON(map[string]string{"stopped": c.Instance})
	}
	fmt.Fprintf(stdout, "Stopped %s\n", c.Instance)
	return nil
}

// RestartCmd is `ten restart SERVICE:ID`.
type RestartCmd struct {
	Instance string `arg:"" help:"Instance to restart, SERVICE:ID."`
}

// Run asks the server to restart the instance.
func (c *RestartCmd) Run(ctx context.Context, g *Globals) error {
	if _, err := units.ParseInstance(c.Instance); err != nil {
		return err
	}
	var res map[string]any
	if err := g.client().Do(ctx, "POST", client.InstancePath(c.Instance)+"/restart", nil, &res); err != nil {
		return err
	}
	if g.JSON {
		return printJSON(res)
	}
	fmt.Fprintf(stdout, "Restarted %s\n", c.Instance)
	return nil
}

// WeightCmd is `ten weight SERVICE:ID N`.
type WeightCmd struct {
	Instance string `arg:"" help:"Instance, SERVICE:ID."`
	Weight   int    `arg:"" help:"Weight 0-100 (0 = out of the service's rotation)."`
}

// Run sets the weight.
func (c *WeightCmd) Run(ctx context.Context, g *Globals) error {
	if _, err := units.ParseInstance(c.Instance); err != nil {
		return err
	}
	if c.Weight < 0 || c.Weight > 100 {
		return fmt.Errorf("weight %d: must be 0..100", c.Weight)
	}
	var res map[string]any
	if err := g.client().Do(ctx, "PUT", client.InstancePath(c.Instance)+"/weight", map[string]int{"weight": c.Weight}, &res); err != nil {
		return err
	}
	if g.JSON {
		return printJSON(res)
	}
	fmt.Fprintf(stdout, "Set %s weight to %d\n", c.Instance, c.Weight)
	return nil
}

// PsCmd is `ten ps`.
type PsCmd struct {
	All bool `short:"a" help:"Also list sleeping and frozen instances (ten ps alone lists those that are awake, as tenement lists the instances it runs)."`
}

// Run lists instances: those awake, or with --all every one.
func (c *PsCmd) Run(ctx context.Context, g *Globals) error {
	var rows []apitype.Row
	if err := g.client().Do(ctx, "GET", "/api/instances", nil, &rows); err != nil {
		return err
	}
	awake, asleep := splitAsleep(rows)
	if c.All {
		if err := printRows(g, "", rows); err != nil {
			return err
		}
		if len(rows) > 0 && !g.JSON {
			fmt.Fprintf(stdout, "\n%d instance(s) running on %s, %d asleep\n", len(awake), g.Server, asleep)
		}
		return nil
	}
	if err := printRows(g, "", awake); err != nil {
		return err
	}
	if len(awake) > 0 && !g.JSON {
		// tenement's last line, which its users' scripts read.
		fmt.Fprintf(stdout, "\n%d instance(s) running on %s\n", len(awake), g.Server)
	}
	if asleep > 0 && !g.JSON {
		// On stderr: what scripts read of stdout stays tenement's list.
		fmt.Fprintf(os.Stderr, "(%d asleep, not listed: ten ps --all)\n", asleep)
	}
	return nil
}

// splitAsleep returns the rows of instances that are awake, in order, and
// how many others are asleep: sleeping (stopped until a request, or on
// standby) or frozen. tenement stops an idle instance and no longer lists
// it; its users' scripts wait for an idle instance to leave `ten ps`.
func splitAsleep(rows []apitype.Row) (awake []apitype.Row, asleep int) {
	awake = make([]apitype.Row, 0, len(rows))
	for _, r := range rows {
		if r.State == apitype.StateSleeping || r.State == apitype.StateFrozen {
			asleep++
			continue
		}
		awake = append(awake, r)
	}
	return awake, asleep
}

// printRows prints head, then rows as a table (or JSON), to stdout (one
// write when ten ends: see stdout).
func printRows(g *Globals, head string, rows []apitype.Row) error {
	if g.JSON {
		return printJSON(rows)
	}
	fmt.Fprint(stdout, head)
	if len(rows) == 0 {
		// tenement's words, which its users' scripts look for.
		fmt.Fprintf(stdout, "No running instances\nServer: %s\n", g.Server)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	// A fleet's rows name their node; a single server's do not, and its
	// table stays as it was.
	fleet := false
	for _, r := range rows {
		fleet = fleet || r.Node != ""
	}
	if fleet {
		fmt.Fprint(tw, "NODE\t")
	}
	// tenement's six columns first, in its order (scripts that read a
	// column by its place keep working), then ten's own.
	fmt.Fprintln(tw, "INSTANCE\tLISTEN\tUPTIME\tIDLE\tHEALTH\tWEIGHT\tSTATE\tMEMORY\tRESTARTS\tLAST-EXIT\tDISK")
	for _, r := range rows {
		if fleet {
			fmt.Fprintf(tw, "%s\t", r.Node)
		}
		state := r.State
		if r.Detail != "" {
			state += " (" + r.Detail + ")"
		}
		up := "-"
		if r.State == apitype.StateRunning {
			up = dur(r.UptimeSec)
		}
		mem := "-"
		if r.MemoryBytes > 0 {
			mem = bytesHuman(r.MemoryBytes)
		}
		health := r.Health
		if health == "" {
			health = "-"
		}
		lastExit := r.LastExit
		if lastExit == "" {
			lastExit = "-"
		}
		if r.OOMKills > 0 && lastExit != "oom-kill" {
			lastExit += fmt.Sprintf(" (%d oom-kills)", r.OOMKills)
		}
		disk := "-"
		if r.StorageQuotaBytes > 0 {
			disk = bytesHuman(r.StorageBytes) + "/" + bytesHuman(r.StorageQuotaBytes)
		}
		listen := r.Socket
		if listen == "" {
			listen = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", r.Instance, listen, up, dur(r.IdleSec), health, r.Weight, state, mem, r.Restarts, lastExit, disk)
	}
	return tw.Flush()
}

func dur(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func bytesHuman(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0fK", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%dB", b)
}
