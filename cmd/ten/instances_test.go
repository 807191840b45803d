package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/tenhq/ten/apitype"
)

// ten spawn SERVICE:ID, and tenement's older ten spawn SERVICE --id ID.
func TestSpawnName(t *testing.T) {
	for _, c := range []struct{ arg, id, want, err string }{
		{"api:prod", "", "api:prod", ""},
		{"api", "prod", "api:prod", ""},
		{"api:prod", "x", "", "not both"},
		{"api", "", "api", ""}, // refused later by ParseInstance, with its message
	} {
		got, err := spawnName(c.arg, c.id)
		if got != c.want || (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("spawnName(%q, %q) = %q, %v; want %q, %q", c.arg, c.id, got, err, c.want, c.err)
		}
	}
}

// tenement's older ten deploy SERVICE --version VERSION, and ten --version.
func TestDeployVersionFlagAndVersionArgs(t *testing.T) {
	var cli CLI
	parser, err := kong.New(&cli, kongOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"deploy", "api", "--version", "v2", "--weight", "0"}); err != nil {
		t.Fatal(err)
	}
	if got, err := olderForm("deploy", cli.Deploy.Instance, "version", "VERSION", cli.Deploy.Version); got != "api:v2" || err != nil || cli.Deploy.Weight != 0 {
		t.Errorf("deploy api --version v2: %q %v, weight %d", got, err, cli.Deploy.Weight)
	}
	if _, err := olderForm("deploy", "api:v1", "version", "VERSION", "v2"); err == nil || !strings.Contains(err.Error(), "SERVICE --version VERSION, not both") {
		t.Errorf("deploy api:v1 --version v2: %v", err)
	}
	for _, args := range [][]string{{"--version"}, {"-V"}} {
		if got := versionArgs(args); len(got) != 1 || got[0] != "version" {
			t.Errorf("versionArgs(%q) = %q", args, got)
		}
		kctx, err := parser.Parse(versionArgs(args))
		if err != nil || kctx.Command() != "version" {
			t.Errorf("ten %s: %v", args[0], err)
		}
	}
	if got := versionArgs([]string{"ps", "--version"}); len(got) != 2 {
		t.Errorf("versionArgs changed other arguments: %q", got)
	}
}

func TestSplitAsleep(t *testing.T) {
	rows := []apitype.Row{
		{Instance: "web:a", State: apitype.StateRunning},
		{Instance: "web:b", State: apitype.StateSleeping},
		{Instance: "web:c", State: apitype.StateStarting},
		{Instance: "web:d", State: apitype.StateFrozen},
		{Instance: "web:e", State: apitype.StateFailed},
		{Instance: "web:f", State: apitype.StateRemote},
	}
	awake, asleep := splitAsleep(rows)
	var names []string
	for _, r := range awake {
		names = append(names, r.Instance)
	}
	if got := strings.Join(names, " "); got != "web:a web:c web:e web:f" || asleep != 2 {
		t.Errorf("awake %q, asleep %d; want web:a web:c web:e web:f and 2", got, asleep)
	}
}

// ten ps puts tenement's six columns first, in its order, so that a script
// reading tenement's HEALTH ($5) or WEIGHT ($6) by place reads the same
// column from ten.
func TestPrintRowsTenementColumnsFirst(t *testing.T) {
	var buf bytes.Buffer
	old := stdout
	stdout = bufio.NewWriter(&buf)
	defer func() { stdout = old }()
	rows := []apitype.Row{
		{Instance: "api:prod", Socket: "/run/ten/api-prod.sock", State: apitype.StateRunning, UptimeSec: 75, IdleSec: 3, Health: "healthy", Weight: 100, MemoryBytes: 3 << 20, Restarts: 2, LastExit: "exit 1"},
		{Instance: "api:b", State: apitype.StateSleeping, Detail: "idle", IdleSec: 9, Weight: 0},
	}
	if err := printRows(&Globals{Server: "http://localhost:8080"}, "", rows); err != nil {
		t.Fatal(err)
	}
	stdout.Flush()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := [][]string{
		{"INSTANCE", "LISTEN", "UPTIME", "IDLE", "HEALTH", "WEIGHT", "STATE", "MEMORY", "RESTARTS", "LAST-EXIT", "DISK"},
		{"api:prod", "/run/ten/api-prod.sock", "1m15s", "3s", "healthy", "100", "running", "3.0M", "2", "exit", "1", "-"},
		{"api:b", "-", "-", "9s", "-", "0", "sleeping", "(idle)", "-", "0", "-", "-"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("line %d: %q\nwant %q", i, got, w)
		}
	}
}
