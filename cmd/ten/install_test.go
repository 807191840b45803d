package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestInstallAddressIPv6: --address takes an IPv6 address too; the socket
// unit gets it bracketed ([::1]:8080), which systemd's ListenStream= reads.
func TestInstallAddressIPv6(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenement.toml")
	if err := os.WriteFile(path, []byte("[service.api]\ncommand = \"/bin/app\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{"::1": "[::1]:8080", "127.0.0.1": "127.0.0.1:8080"} {
		c := InstallCmd{Domain: "example.com", Port: 8080, Address: addr, Binary: "/usr/local/bin/ten"}
		o, err := c.options(&Globals{Config: path})
		if err != nil {
			t.Fatal(err)
		}
		if o.Listen != want {
			t.Errorf("--address %s: ListenStream %q, want %q", addr, o.Listen, want)
		}
	}
}

// TestInstallListen: tenement.socket holds settings.listen unless --address
// or -p say otherwise, so that `ten install` of a config that keeps ten on
// loopback does not open it on every address.
func TestInstallListen(t *testing.T) {
	for _, c := range []struct {
		listen, flagAddr string
		flagPort         int
		want             string
	}{
		{listen: "127.0.0.1:9090", want: "127.0.0.1:9090"},
		{listen: ":8080", want: "0.0.0.0:8080"},
		{listen: "localhost:8081", want: "127.0.0.1:8081"},
		{listen: "[::1]:8080", want: "[::1]:8080"},
		{listen: "127.0.0.1:9090", flagAddr: "0.0.0.0", want: "0.0.0.0:9090"},
		{listen: "127.0.0.1:9090", flagPort: 80, want: "127.0.0.1:80"},
		{listen: "example.com:8080", want: "error"},
		{listen: "example.com:8080", flagAddr: "10.0.0.1", want: "10.0.0.1:8080"},
	} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "tenement.toml")
		if err := os.WriteFile(cfg, []byte("[settings]\nlisten = \""+c.listen+"\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		o, err := (&InstallCmd{Domain: "example.com", Binary: "/usr/local/bin/ten", Address: c.flagAddr, Port: c.flagPort}).options(&Globals{Config: cfg})
		got := o.Listen
		if err != nil {
			got = "error"
			t.Logf("listen %q: %v", c.listen, err)
		}
		if got != c.want {
			t.Errorf("listen %q, --address %q, -p %d: socket holds %s, want %s", c.listen, c.flagAddr, c.flagPort, got, c.want)
		}
	}
}

// TestCaddyUpstream: the Caddyfile's upstream is where ten listens
// (settings.listen), not always localhost:8080.
func TestCaddyUpstream(t *testing.T) {
	for _, c := range []struct {
		listen string
		port   int
		want   string
	}{
		{":8080", 0, "localhost:8080"},
		{"127.0.0.1:9090", 0, "localhost:9090"},
		{"10.0.0.5:8080", 0, "10.0.0.5:8080"},
		{"127.0.0.1:9090", 8000, "localhost:8000"},
		{"localhost:8081", 0, "localhost:8081"},
	} {
		if got, err := caddyUpstream(c.port, c.listen); err != nil || got != c.want {
			t.Errorf("listen %q, -p %d: upstream %q (%v), want %q", c.listen, c.port, got, err, c.want)
		}
	}
}
