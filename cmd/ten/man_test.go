package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/tenhq/ten/internal/man"
)

var update = flag.Bool("update", false, "rewrite docs/man from the CLI and the config schema (make man)")

const manDir = "../../docs/man"

const tenDescription = `ten runs many small app instances on one Linux server as systemd units. An instance SERVICE:ID is a socket unit tenement-SERVICE@ID.socket, which systemd keeps listening, and a service unit tenement-SERVICE@ID.service, which runs the app. ten serve routes HTTP by Host ({id}.{service}.DOMAIN) to the instance's socket, stops instances that are idle and lets systemd start them again on the next connection (socket activation), and applies the limits and the sandbox of tenement.toml as unit properties. ten is not the parent of any app: restarting or upgrading ten drops no instance.

Every command but serve, init, config, doctor, install, uninstall, caddy, token-gen, version and completion is a client of the running ten serve: it talks to --server with the token from --token, TENEMENT_TOKEN or the api_token file in the data directory.`

const configDescription = `tenement.toml is the configuration file of tenement, which ten reads with the same tables, keys and meanings, and some keys of its own. A file with an unknown key or a bad value is refused whole, with file:line: key: what is wrong, and nothing running is touched. ten serve reads it when it starts; the packaged ten runs as tenement.service, so after a change: systemctl restart tenement.service (instances keep running).`

var manFiles = [][2]string{
	{"/etc/tenement/tenement.toml", "The configuration of the packaged ten; see tenement.toml(5)."},
	{"/var/lib/tenement", "ten's data directory in the package's configuration: the admin token api_token, tokens.json, state.json, and the instances' data SERVICE/ID."},
	{"/usr/lib/systemd/system/tenement.service, tenement.socket", "ten itself, as the package installs it: tenement.socket holds the port (127.0.0.1:8080), tenement.service runs ten serve. ten install writes its own to /etc/systemd/system instead."},
	{"/run/tenement", "The instances' sockets, which systemd holds."},
	{"/sys/fs/bpf/tenement", "ten's pinned BPF programs and maps (L4 dispatch, activity accounting)."},
}

// pages renders every man page from the CLI model and the config schema.
func pages(t *testing.T) []man.Page {
	t.Helper()
	k, err := kong.New(&CLI{}, kongOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	ps := man.Commands(k.Model, tenDescription, manFiles)
	src, err := os.ReadFile("../../config/config.go")
	if err != nil {
		t.Fatal(err)
	}
	fleetSrc, err := os.ReadFile("../../config/fleet.go")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := man.FieldDocs(map[string][]byte{"config.go": src, "fleet.go": fleetSrc})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := man.Config(docs, configDescription)
	if err != nil {
		t.Fatal(err)
	}
	return append(ps, cp)
}

// The committed man pages are what the CLI and the config schema make now;
// `make man` rewrites them.
func TestManPages(t *testing.T) {
	ps := pages(t)
	want := map[string]string{}
	for _, p := range ps {
		want[p.File()] = p.Text
	}
	if *update {
		if err := os.MkdirAll(manDir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(manDir, "*.[1-8]"))
		for _, f := range old {
			if _, ok := want[filepath.Base(f)]; !ok {
				os.Remove(f)
			}
		}
		for name, text := range want {
			if err := os.WriteFile(filepath.Join(manDir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	got, _ := filepath.Glob(filepath.Join(manDir, "*.[1-8]"))
	for _, f := range got {
		if _, ok := want[filepath.Base(f)]; !ok {
			t.Errorf("docs/man/%s is no page of ten's any more: run make man", filepath.Base(f))
		}
	}
	for name, text := range want {
		b, err := os.ReadFile(filepath.Join(manDir, name))
		if err != nil {
			t.Errorf("docs/man/%s: %v: run make man", name, err)
			continue
		}
		if string(b) != text {
			t.Errorf("docs/man/%s is stale (the CLI or the config schema changed): run make man", name)
		}
	}
	// Every visible command has its page.
	k, _ := kong.New(&CLI{}, kongOptions()...)
	for _, n := range k.Model.Children {
		if _, ok := want["ten-"+n.Name+".1"]; !ok && !n.Hidden {
			t.Errorf("no page for command %s", n.Name)
		}
	}
	if !strings.Contains(want["tenement.toml.5"], `\fBidle_timeout\fR`) {
		t.Errorf("tenement.toml(5) lacks idle_timeout")
	}
}
