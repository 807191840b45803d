package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/client"
	"github.com/tenhq/ten/systemd/journal"
	"github.com/tenhq/ten/units"
)

// LogsCmd is `ten logs [SERVICE:ID]`: the instances' output, read from
// journald by the server (it persists across restarts of ten and of the app).
type LogsCmd struct {
	Instance string `arg:"" optional:"" help:"Instance, SERVICE:ID (default: every instance the token may see)."`
	Search   string `help:"Only lines containing this text (case-insensitive unless it has upper-case letters)."`
	Limit    *int   `help:"How many of the newest lines to show (default 100; with -f, 10 before following)." placeholder:"N"`
	Follow   bool   `short:"f" help:"Keep printing new lines until Ctrl-C."`
	Since    string `help:"Only lines newer than this: a duration back from now (10m, 2h, 3d) or a time (2006-01-02 15:04:05)."`
	Level    string `help:"Only stdout or stderr lines (ten logs stderr at journal priority err; see README)." placeholder:"stdout|stderr"`
}

// Run prints the logs.
func (c *LogsCmd) Run(ctx context.Context, g *Globals) error {
	if c.Instance != "" {
		if _, err := units.ParseInstance(c.Instance); err != nil {
			return err
		}
	}
	limit := -1 // the server's default
	if c.Limit != nil {
		limit = *c.Limit
		if limit < 0 || limit > apitype.MaxLogLimit {
			return fmt.Errorf("--limit %d: want 0 to %d", limit, apitype.MaxLogLimit)
		}
	}
	if c.Level != "" && c.Level != journal.StreamStdout && c.Level != journal.StreamStderr {
		return fmt.Errorf("--level %q: want stdout or stderr", c.Level)
	}
	path := apitype.LogsPath(c.Follow, c.Instance, c.Search, c.Since, c.Level, limit)
	cl := g.client()
	if !c.Follow {
		var entries []journal.Entry
		if err := cl.Do(ctx, "GET", path, nil, &entries); err != nil {
			return err
		}
		if g.JSON {
			return printJSON(entries)
		}
		for _, e := range entries {
			printEntry(e, c.Instance == "")
		}
		return nil
	}
	enc := json.NewEncoder(stdout)
	return cl.Stream(ctx, path, func(ev client.Event) error {
		switch ev.Name {
		case "error":
			var e struct {
				Error string `json:"error"`
			}
			json.Unmarshal([]byte(ev.Data), &e)
			return fmt.Errorf("log stream: %s", e.Error)
		case "log", "message":
			var e journal.Entry
			if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
				return fmt.Errorf("log stream: bad event: %w", err)
			}
			if g.JSON {
				if err := enc.Encode(e); err != nil { // one object a line
					return err
				}
			} else {
				printEntry(e, c.Instance == "")
			}
			// Each entry as it comes, not when 64 KiB have gathered.
			return stdout.Flush()
		}
		return nil
	})
}

func printEntry(e journal.Entry, withInstance bool) {
	var b strings.Builder
	b.WriteString(e.Time.Local().Format("2006-01-02 15:04:05.000"))
	if withInstance {
		b.WriteString(" " + e.Instance)
	}
	switch e.Stream {
	case journal.StreamStderr:
		b.WriteString(" stderr:")
	case journal.StreamSystemd:
		b.WriteString(" systemd:")
	}
	b.WriteString(" " + e.Message)
	fmt.Fprintln(stdout, b.String())
}
