package acct

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeSource struct {
	stats map[uint64]Stats
	err   error
}

func (f *fakeSource) All() (map[uint64]Stats, error) { return f.stats, f.err }

func TestCollector(t *testing.T) {
	src := &fakeSource{stats: map[uint64]Stats{
		// api:prod's socket unit and service cgroups, summed.
		10: {RxBytes: 100, TxBytes: 200, RxPackets: 3, TxPackets: 4, Connections: 1, LastActivity: time.Unix(1700000000, 0), LastInbound: time.Unix(1700000000, 0)},
		// Its last packets were on a connection it opened: not inbound.
		11: {RxBytes: 1, TxBytes: 2, RxPackets: 1, TxPackets: 1, Connections: 1, LastActivity: time.Unix(1700000100, 500e6), LastInbound: time.Unix(1699999990, 0)},
		// web:dev never saw a packet.
		20: {},
		// Not an instance.
		99: {RxBytes: 5},
	}}
	names := map[uint64]string{10: "api:prod", 11: "api:prod", 20: "web:dev"}
	c := NewCollector(src, func(id uint64) (string, bool) { n, ok := names[id]; return n, ok }, nil)

	const want = `
# HELP ten_bpf_scrape_errors_total Scrapes that could not read the BPF accounting map.
# TYPE ten_bpf_scrape_errors_total counter
ten_bpf_scrape_errors_total 0
# HELP ten_instance_connections_total TCP connections the instance accepted or opened.
# TYPE ten_instance_connections_total counter
ten_instance_connections_total{instance="api:prod"} 2
ten_instance_connections_total{instance="web:dev"} 0
# HELP ten_instance_last_activity_seconds Unix time of the instance's last packet or connection.
# TYPE ten_instance_last_activity_seconds gauge
ten_instance_last_activity_seconds{instance="api:prod"} 1.7000001005e+09
# HELP ten_instance_last_inbound_seconds Unix time of the instance's last packet or connection other than those of connections it opened itself and non-TCP packets (what idle_activity = "inbound" counts).
# TYPE ten_instance_last_inbound_seconds gauge
ten_instance_last_inbound_seconds{instance="api:prod"} 1.7e+09
# HELP ten_instance_rx_bytes_total IP bytes received by the instance's sockets, counted by BPF on its cgroups.
# TYPE ten_instance_rx_bytes_total counter
ten_instance_rx_bytes_total{instance="api:prod"} 101
ten_instance_rx_bytes_total{instance="web:dev"} 0
# HELP ten_instance_tx_bytes_total IP bytes sent by the instance's sockets, counted by BPF on its cgroups.
# TYPE ten_instance_tx_bytes_total counter
ten_instance_tx_bytes_total{instance="api:prod"} 202
ten_instance_tx_bytes_total{instance="web:dev"} 0
`
	names2 := []string{"ten_bpf_scrape_errors_total", "ten_instance_connections_total", "ten_instance_last_activity_seconds", "ten_instance_last_inbound_seconds", "ten_instance_rx_bytes_total", "ten_instance_tx_bytes_total"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names2...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c, "ten_instance_rx_packets_total", "ten_instance_tx_packets_total"); n != 4 {
		t.Errorf("%d packet series, want 4", n)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	src.err = errors.New("map gone")
	const failed = `
# HELP ten_bpf_scrape_errors_total Scrapes that could not read the BPF accounting map.
# TYPE ten_bpf_scrape_errors_total counter
ten_bpf_scrape_errors_total 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(failed)); err != nil {
		t.Error(err)
	}
}
