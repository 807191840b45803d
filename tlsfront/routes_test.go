package tlsfront

import (
	"net"
	"strings"
	"testing"

	"github.com/tenhq/ten/config"
)

func TestRoutes(t *testing.T) {
	cfg := &config.Config{Settings: config.Settings{Domain: "example.test"}, Services: map[string]*config.Service{"api": {Name: "api"}}}
	routes := Routes(cfg,
		func(svc, id string) bool { return svc == "api" && id == "prod" },
		func(svc string) bool { return svc == "legacy" })
	for host, want := range map[string]bool{
		"api.example.test":        true,  // declared
		"legacy.example.test":     true,  // has instances
		"prod.api.example.test":   true,  // exists
		"new.api.example.test":    false, // never spawned
		"other.example.test":      false,
		"a.b.api.example.test":    false,
		"api.example.test.evil":   false,
		"prod.api.elsewhere.test": false,
	} {
		if got := routes(host); got != want {
			t.Errorf("routes(%q) = %v, want %v", host, got, want)
		}
	}
}

// A port that cannot be bound is an error naming the key, and the listener
// opened before it is closed again.
func TestListenNamesKey(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := &config.Config{Settings: config.Settings{Listen: "127.0.0.1:0"}}
	cfg.Settings.TLS.HTTPSPort = 0
	cfg.Settings.TLS.HTTPPort = busy.Addr().(*net.TCPAddr).Port
	if _, _, err := Listen(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "settings.tls.http_port") {
		t.Fatalf("err %v, want one naming settings.tls.http_port", err)
	}
	hl, pl, err := Listen(cfg, busy, busy)
	if err != nil || hl != busy || pl != busy {
		t.Fatalf("passed listeners not used: %v %v %v", hl, pl, err)
	}
}
