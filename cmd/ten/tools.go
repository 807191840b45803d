package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/doctor"
)

// DoctorCmd is `ten doctor`.
type DoctorCmd struct{}

// Run prints which features are on and why one is off.
func (DoctorCmd) Run(ctx context.Context, g *Globals) error {
	cs := doctor.Run(ctx)
	if cfg, err := g.loadConfig(); err == nil {
		cs = append(cs, doctor.TLS(cfg, time.Now())...)
	}
	if g.JSON {
		return json.NewEncoder(stdout).Encode(cs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, c := range cs {
		st := "on"
		if !c.OK {
			st = "off"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, st, c.Detail)
	}
	return tw.Flush()
}

// ConfigCmd is `ten config`.
type ConfigCmd struct{}

// Run prints the loaded config with defaults filled in.
func (ConfigCmd) Run(g *Globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	if g.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cfg)
	}
	b, err := toml.Marshal(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %s, with defaults filled in\n%s%s", cfg.Path, configSummary(cfg), b)
	return nil
}

// configSummary is tenement's ten config ("Data dir: ...", then each
// service's command, isolation, health and idle_timeout) as TOML comments,
// so that what its users grep for is there and the output stays valid
// TOML. A value with a line break is printed quoted: it must not end the
// comment.
func configSummary(cfg *config.Config) string {
	one := func(v string) string {
		if strings.ContainsAny(v, "\n\r") {
			return strconv.Quote(v)
		}
		return v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Data dir: %q\n# Health interval: %ds\n#\n# Services:\n", cfg.Settings.DataDir, cfg.Settings.HealthCheckInterval)
	for _, name := range cfg.ServiceNames() {
		svc := cfg.Services[name]
		command := strings.Join(append([]string{svc.Command}, svc.Args...), " ")
		fmt.Fprintf(&b, "#   [%s]\n#     command: %s\n#     isolation: %s\n", name, one(command), svc.Isolation)
		if svc.Health != "" {
			fmt.Fprintf(&b, "#     health: %s\n", one(svc.Health))
		}
		if svc.IdleTimeout > 0 {
			fmt.Fprintf(&b, "#     idle_timeout: %ds\n", svc.IdleTimeout)
		}
	}
	return b.String()
}

// InitCmd is `ten init`.
type InitCmd struct {
	Name    string `help:"Service name (default: the directory's name)."`
	Command string `help:"Command that starts the app (default: guessed from the files here)."`
	Force   bool   `help:"Overwrite an existing tenement.toml."`
	Dir     string `default:"." type:"existingdir" help:"Directory of the app."`
}

// Run writes a starter tenement.toml.
func (c *InitCmd) Run() error {
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, config.FileName)
	if _, err := os.Stat(path); err == nil && !c.Force {
		return fmt.Errorf("%s exists already (use --force to overwrite)", path)
	}
	name := c.Name
	if name == "" {
		name = sanitizeName(filepath.Base(dir))
	}
	if err := config.CheckName("service name", name); err != nil {
		return fmt.Errorf("%w (use --name)", err)
	}
	cmd, why := c.Command, "given with --command"
	if cmd == "" {
		cmd, why = guessCommand(dir, name)
	}
	text := fmt.Sprintf(`# tenement.toml written by ten init (%s).
[settings]
data_dir = "./tenement-data"
listen = ":8080"
domain = "localhost"

[service.%s]
command = %q
workdir = %q
health = "/health"
idle_timeout = 300          # seconds without traffic before it sleeps; 0 = never
startup_timeout = 10
memory_limit_mb = 256
# isolation = "namespace"   # default: own user, read-only system, private /tmp

[service.%s.env]
# KEY = "value {name}:{id}"

[instances]
%s = ["prod"]
`, why, name, cmd, dir, name, name)
	if _, err := config.Parse(path, []byte(text)); err != nil {
		return fmt.Errorf("generated config does not load (a bug): %w", err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return err
	}
	// tenement's lines, then what to run next.
	fmt.Fprintf(stdout, "Created %s\n\n  Service: %s\n  Command: %s  # %s\n\nNext steps:\n"+
		"  1. ten token-gen    # create an API token\n"+
		"  2. sudo ten serve   # start the server (root: it makes systemd units)\n"+
		"  3. ten ps           # check the instances\n", path, name, cmd, why)
	return nil
}

func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if out == "" {
		out = "app"
	}
	if len(out) > config.MaxNameLen {
		out = out[:config.MaxNameLen]
	}
	return out
}

// guessCommand picks a start command from the files of a Python, Node, Go or
// Rust app, as tenement's init does.
func guessCommand(dir, name string) (string, string) {
	has := func(f string) bool { _, err := os.Stat(filepath.Join(dir, f)); return err == nil }
	read := func(f string) string { b, _ := os.ReadFile(filepath.Join(dir, f)); return string(b) }
	switch {
	case has("main.py") && strings.Contains(read("main.py"), "FastAPI"):
		return "/usr/bin/env uvicorn main:app --host 127.0.0.1 --port {port}", "FastAPI app in main.py"
	case has("app.py") && strings.Contains(read("app.py"), "Flask"):
		return "/usr/bin/env flask --app app run --host 127.0.0.1 --port {port}", "Flask app in app.py"
	case has("main.py"):
		return "/usr/bin/python3 main.py", "Python main.py (read PORT)"
	case has("app.py"):
		return "/usr/bin/python3 app.py", "Python app.py (read PORT)"
	case has("package.json"):
		if strings.Contains(read("package.json"), `"start"`) {
			return "/usr/bin/env npm start", "package.json start script (read PORT)"
		}
		for _, f := range []string{"server.js", "index.js", "app.js"} {
			if has(f) {
				return "/usr/bin/env node " + f, "Node " + f + " (read PORT)"
			}
		}
		return "/usr/bin/env node .", "Node package (read PORT)"
	case has("go.mod"):
		return filepath.Join(dir, name), "Go module: build it with `go build -o " + name + "` first (read PORT)"
	case has("Cargo.toml"):
		// cargo names the binary after the package (a workspace: edit it).
		var crate struct {
			Package struct{ Name string } `toml:"package"`
		}
		bin := name
		if toml.Unmarshal([]byte(read("Cargo.toml")), &crate) == nil && crate.Package.Name != "" {
			bin = crate.Package.Name
		}
		return filepath.Join(dir, "target", "release", bin), "Rust crate: build it with `cargo build --release` first (read PORT)"
	}
	return "/usr/local/bin/" + name, "nothing recognised: edit the command"
}
