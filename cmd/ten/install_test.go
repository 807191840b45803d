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
