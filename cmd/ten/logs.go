package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

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
			printEntry(e)
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
				printEntry(e)
			}
			// Each entry as it comes, not when 64 KiB have gathered.
			return stdout.Flush()
		}
		return nil
	})
}

// printEntry prints one line as tenement's ten logs does, with the date
// and milliseconds added: "2006-01-02 15:04:05.000 [OUT] api:prod msg",
// [ERR] for stderr and [SYS] for systemd's own lines about the unit. The
// instance is on every line, asked for or not, so that lines of several
// commands can be cut and grepped alike. The message is an app's, that is
// a tenant's: its control characters are printed escaped (see printable).
func printEntry(e journal.Entry) {
	fmt.Fprintln(stdout, entryLine(e))
}

// entryLine is printEntry's line, without the newline.
func entryLine(e journal.Entry) string {
	marker := "OUT"
	switch e.Stream {
	case journal.StreamStderr:
		marker = "ERR"
	case journal.StreamSystemd:
		marker = "SYS"
	}
	return e.Time.Local().Format("2006-01-02 15:04:05.000") + " [" + marker + "] " + e.Instance + " " + printable(e.Message)
}

// printable escapes what an app could write to forge or hide lines on the
// operator's terminal: a newline or carriage return (a message sent over
// journald's native protocol may hold them, and the rest would read as
// lines of other instances), other control characters (escape sequences
// that move the cursor, clear the screen or set the window title), Unicode
// bidirectional controls (which reorder what is shown), and bytes that are
// not UTF-8. They become \n, \r, \xNN or \uNNNN; a tab and every other
// character are kept.
func printable(s string) string {
	if !strings.ContainsFunc(s, escaped) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case escaped(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case escaped(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// escaped reports whether printable escapes r. utf8.RuneError is among
// them: it stands for a byte that is not UTF-8, and U+FFFD itself is
// escaped too, so that the two are told apart.
func escaped(r rune) bool {
	return (unicode.IsControl(r) && r != '\t') || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError
}
