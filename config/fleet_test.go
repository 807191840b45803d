package config

import (
	"strings"
	"testing"
)

const fleetBase = `
[service.api]
command = "./api"
`

func TestFleetAbsentIsSingleServer(t *testing.T) {
	c, err := Parse("t.toml", []byte(fleetBase))
	if err != nil {
		t.Fatal(err)
	}
	if c.Fleet.Enabled() || c.Fleet.LeaseTTL != 0 {
		t.Fatalf("fleet without [fleet]: %+v", c.Fleet)
	}
}

func TestFleetDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(fleetBase+`
[fleet]
etcd_endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
node = "n1"
memory_mb = 4096
`))
	if err != nil {
		t.Fatal(err)
	}
	f := c.Fleet
	if !f.Enabled() || f.Node != "n1" || f.LeaseTTL != DefaultLeaseTTL || f.FenceMargin != DefaultFenceMargin || f.MemoryMB != 4096 {
		t.Fatalf("fleet: %+v", f)
	}
}

func TestFleetErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ body, key string }{
		{`node = "n1"`, "fleet.etcd_endpoints"},
		{`etcd_endpoints = ["10.0.0.1:2379"]` + "\n" + `node = "n1"`, "fleet.etcd_endpoints"},
		{`etcd_endpoints = ["http://a:2379"]`, "fleet.node"},
		{`etcd_endpoints = ["http://a:2379"]` + "\n" + `node = "N/1"`, "fleet.node"},
		{`etcd_endpoints = ["http://a:2379"]` + "\n" + `node = "n"` + "\n" + `lease_ttl = 1`, "fleet.lease_ttl"},
		{`etcd_endpoints = ["http://a:2379"]` + "\n" + `node = "n"` + "\n" + `lease_ttl = 5` + "\n" + `fence_margin = 5`, "fleet.fence_margin"},
		{`etcd_endpoints = ["https://a:2379"]` + "\n" + `node = "n"` + "\n" + `cert = "/c.pem"`, "fleet.cert"},
		{`etcd_endpoints = ["https://a:2379"]` + "\n" + `node = "n"` + "\n" + `ca = "ca.pem"`, "fleet.ca"},
		{`etcd_endpoints = ["http://a:2379"]` + "\n" + `node = "n"` + "\n" + `ca = "/ca.pem"`, "fleet.ca"},
		{`etcd_endpoints = ["http://a:2379"]` + "\n" + `node = "n"` + "\n" + `nodes = 3`, "fleet.nodes"},
	} {
		_, err := Parse("t.toml", []byte(fleetBase+"\n[fleet]\n"+tc.body+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %v; want one naming %s", tc.body, err, tc.key)
		}
	}
}
