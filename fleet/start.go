package fleet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tenhq/ten/config"
)

// Connect opens an etcd client for the [fleet] table.
func Connect(f config.Fleet) (*clientv3.Client, error) {
	cc, err := ClientConfig(f)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("fleet: etcd %s: %w", strings.Join(f.EtcdEndpoints, ","), err)
	}
	return cli, nil
}

// Start joins the node configured in cfg's [fleet] table: it checks the
// node's services against the fleet's (logging each difference as a
// warning: an instance placed here from another node would run with this
// node's config) and begins the node's leased session. fence is called if
// the session ends other than by Close (see SessionOptions.Fence).
func Start(ctx context.Context, cli *clientv3.Client, cfg *config.Config, log *slog.Logger, fence func(string)) (*Session, error) {
	f := cfg.Fleet
	fp, err := FingerprintOf(cfg.Services)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Duration(f.LeaseTTL)*time.Second)
	defer cancel()
	diff, err := CheckServices(ctx, cli, fp)
	if err != nil {
		return nil, fmt.Errorf("node %s, etcd %s: %w", f.Node, strings.Join(f.EtcdEndpoints, ","), err)
	}
	for _, d := range diff {
		log.Warn("this node's services differ from the fleet's", "node", f.Node, "config", cfg.Path, "difference", d)
	}
	sess, err := Join(ctx, cli, SessionOptions{
		Info:   NodeInfo{Node: f.Node, Addr: f.Addr, Capacity: Capacity{MemoryMB: f.MemoryMB, Instances: f.MaxInstances}},
		Timing: TimingOf(f),
		Fence:  fence,
		Log:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(f.EtcdEndpoints, ","), err)
	}
	return sess, nil
}

// WriteNodes prints nodes as the `ten nodes` table.
func WriteNodes(w io.Writer, nodes []NodeStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDR\tLEASE\tTTL LEFT\tINSTANCES\tMEMORY MB\tSINCE")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%x\t%s\t%s\t%s\t%s\n", n.Node, dash(n.Addr), int64(n.Lease), n.LeaseTTL,
			ofCap(n.Load.Instances, n.Capacity.Instances), ofCap(n.Load.MemoryMB, n.Capacity.MemoryMB), n.Started)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ofCap(used, capacity int) string {
	if capacity == 0 {
		return fmt.Sprintf("%d", used)
	}
	return fmt.Sprintf("%d/%d", used, capacity)
}
