package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/tenhq/ten/config"
)

// TestGuessCommand: ten init recognises the kinds of app tenement's init
// does: Python, Node, Go and Rust.
func TestGuessCommand(t *testing.T) {
	for _, tc := range []struct {
		files map[string]string
		want  string
	}{
		{map[string]string{"main.py": "print(1)"}, "/usr/bin/python3 main.py"},
		{map[string]string{"package.json": `{"scripts":{"start":"node s.js"}}`}, "/usr/bin/env npm start"},
		{map[string]string{"go.mod": "module x\n"}, "DIR/app"},
		{map[string]string{"Cargo.toml": "[package]\nname = \"notes-api\"\nversion = \"0.1.0\"\n"}, "DIR/target/release/notes-api"},
		{map[string]string{"Cargo.toml": "[workspace]\nmembers = [\"a\"]\n"}, "DIR/target/release/app"},
	} {
		dir := t.TempDir()
		for f, body := range tc.files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, why := guessCommand(dir, "app")
		if want := strings.Replace(tc.want, "DIR", dir, 1); got != want {
			t.Errorf("files %v: command %q (%s), want %q", tc.files, got, why, want)
		}
	}
}

// ten config begins with tenement's lines (what its users grep for), as
// comments: the whole stays TOML that reads back as the same config.
func TestConfigSummary(t *testing.T) {
	cfg, err := config.Parse("/srv/app/tenement.toml", []byte(`
[settings]
data_dir = "/srv/data"
health_check_interval = 5

[service.api]
command = "uv run app.py"
args = ["--port", "{port}"]
health = "/health"
idle_timeout = 300
isolation = "process"

[service.worker]
command = "./worker"
`))
	if err != nil {
		t.Fatal(err)
	}
	got := configSummary(cfg)
	want := `# Data dir: "/srv/data"
# Health interval: 5s
#
# Services:
#   [api]
#     command: uv run app.py --port {port}
#     isolation: process
#     health: /health
#     idle_timeout: 300s
#   [worker]
#     command: ./worker
#     isolation: namespace
`
	if got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
	b, err := toml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := config.Parse("/srv/app/tenement.toml", []byte(got+string(b)))
	if err != nil {
		t.Fatalf("ten config's output does not read back: %v", err)
	}
	if a := again.Services["api"]; a == nil || a.IdleTimeout != 300 || a.Isolation != "process" || again.Settings.DataDir != "/srv/data" {
		t.Errorf("read back: %+v", again.Services["api"])
	}
	// A line break in a value cannot end the comment.
	cfg.Services["worker"].Command = "./worker\n[settings]"
	if s := configSummary(cfg); !strings.Contains(s, "#     command: \"./worker\\n[settings]\"\n") {
		t.Errorf("a command with a line break:\n%s", s)
	}
}
