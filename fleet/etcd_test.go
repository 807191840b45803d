package fleet

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/internal/relay"
)

// startEtcd runs Debian's etcd (etcd-server) on loopback ports with its
// data in a test directory, and returns its client URL. Without the binary
// the test skips, or fails under TEN_REQUIRE_SYSTEM=1 (CI).
func startEtcd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("TEN_REQUIRE_SYSTEM") == "1" {
			t.Fatal("etcd not found (install etcd-server); TEN_REQUIRE_SYSTEM=1")
		}
		t.Skip("etcd not found (install etcd-server)")
	}
	for attempt := 0; attempt < 5; attempt++ {
		client, peer := freePort(t), freePort(t)
		cu, pu := "http://"+client, "http://"+peer
		dir := t.TempDir()
		cmd := exec.Command(bin, "--name", "t", "--data-dir", dir,
			"--listen-client-urls", cu, "--advertise-client-urls", cu,
			"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
			"--initial-cluster", "t="+pu, "--log-level", "error", "--logger", "zap")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() { _ = cmd.Process.Kill(); <-exited }
		cli := newClient(t, cu)
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			select {
			case <-exited:
				deadline = time.Time{} // port taken: try others
				continue
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := cli.Get(ctx, "ready")
			cancel()
			if err == nil {
				t.Cleanup(stop)
				return cu
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop()
	}
	t.Fatal("etcd did not start")
	return ""
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newClient(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{url}, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// cutter is a TCP relay to etcd that a test can cut, as a network
// partition cuts a node off: open connections drop and new ones fail.
type cutter struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func newCutter(t *testing.T, target string) (*cutter, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{l: l}
	t.Cleanup(c.Cut)
	go func() {
		for {
			a, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				continue
			}
			c.mu.Lock()
			if c.cut {
				a.Close()
				b.Close()
				c.mu.Unlock()
				continue
			}
			c.conns = append(c.conns, a, b)
			c.mu.Unlock()
			go func() { _ = relay.Both(a, b); a.Close(); b.Close() }()
		}
	}()
	return c, "http://" + l.Addr().String()
}

func (c *cutter) Cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = true
	c.l.Close()
	for _, conn := range c.conns {
		conn.Close()
	}
}

var testTiming = Timing{TTL: 2 * time.Second, Margin: time.Second}

func join(t *testing.T, cli *clientv3.Client, node string, fence func(string)) *Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Join(ctx, cli, SessionOptions{
		Info: NodeInfo{Node: node, Capacity: Capacity{Instances: 100}}, Timing: testTiming, Fence: fence,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// Two nodes racing to claim the same instances: each instance gets
// exactly one owner, and both nodes agree on who it is.
func TestClaimRace(t *testing.T) {
	url := startEtcd(t)
	a := join(t, newClient(t, url), "a", nil)
	b := join(t, newClient(t, url), "b", nil)
	if _, err := Join(context.Background(), newClient(t, url), SessionOptions{Info: NodeInfo{Node: "a"}, Timing: testTiming}); err == nil {
		t.Fatal("second live session for node a accepted")
	}
	ctx := testCtx(t)
	const n = 50
	wins := map[string]int{}
	for i := range n {
		inst := fmt.Sprintf("api:i%d", i)
		var wg sync.WaitGroup
		res := make([]string, 2)
		errs := make([]error, 2)
		for j, s := range []*Session{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); res[j], errs[j] = s.Claim(ctx, inst) }()
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("%s: %v, %v", inst, errs[0], errs[1])
		}
		if res[0] != res[1] || (res[0] != "a" && res[0] != "b") {
			t.Fatalf("%s: a sees owner %q, b sees %q", inst, res[0], res[1])
		}
		wins[res[0]]++
	}
	if got := len(a.Owned()) + len(b.Owned()); got != n || len(a.Owned()) != wins["a"] {
		t.Fatalf("owned a=%d b=%d, wins %v", len(a.Owned()), len(b.Owned()), wins)
	}
	t.Logf("claims won: %v", wins)
	// Released, an instance can be claimed by the other node.
	inst := a.Owned()[0]
	if err := a.Release(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Claim(ctx, inst); err != nil || got != "b" {
		t.Fatalf("claim after release: %q, %v", got, err)
	}
	// A release by a non-owner removes nothing.
	if err := a.Release(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Claim(ctx, inst); got != "b" {
		t.Fatalf("owner after a's stray release: %q", got)
	}
}

// A node whose lease is revoked on the server fences at its next
// keep-alive, and may claim nothing after.
func TestRevokedLeaseFences(t *testing.T) {
	url := startEtcd(t)
	fenced := make(chan string, 1)
	a := join(t, newClient(t, url), "a", func(why string) { fenced <- why })
	ctx := testCtx(t)
	if _, err := a.Claim(ctx, "api:x"); err != nil {
		t.Fatal(err)
	}
	if _, err := newClient(t, url).Revoke(ctx, a.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case why := <-fenced:
		t.Logf("fenced: %s", why)
	case <-time.After(3 * testTiming.TTL):
		t.Fatal("node did not fence after its lease was revoked")
	}
	<-a.Done()
	if _, err := a.Claim(ctx, "api:y"); err == nil {
		t.Fatal("fenced session claimed an instance")
	}
	b := join(t, newClient(t, url), "b", nil)
	if got, err := b.Claim(ctx, "api:x"); err != nil || got != "b" {
		t.Fatalf("b claim after a's revocation: %q, %v", got, err)
	}
}

// A node cut off from etcd fences before its lease ends on the server,
// so by the time another node can claim its instance it has stopped it:
// the instance never runs on two nodes.
func TestPartitionedNodeFencesFirst(t *testing.T) {
	url := startEtcd(t)
	cut, viaCut := newCutter(t, url[len("http://"):])
	var fencedAt time.Time
	fenced := make(chan struct{})
	a := join(t, newClient(t, viaCut), "a", func(string) {
		time.Sleep(100 * time.Millisecond) // stopping the instances takes a while
		fencedAt = time.Now()
		close(fenced)
	})
	b := join(t, newClient(t, url), "b", nil)
	ctx := testCtx(t)
	if got, err := a.Claim(ctx, "api:x"); err != nil || got != "a" {
		t.Fatalf("a claim: %q, %v", got, err)
	}
	time.Sleep(testTiming.KeepAliveEvery() * 2) // some keep-alives go through
	cutAt := time.Now()
	cut.Cut()
	var claimedAt time.Time
	for deadline := time.Now().Add(5 * testTiming.TTL); ; {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		got, err := b.Claim(cctx, "api:x")
		cancel()
		if err == nil && got == "b" {
			claimedAt = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never got api:x (last: %q, %v)", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-fenced:
	default:
		t.Fatalf("b claimed api:x %v after the cut while a had not fenced", claimedAt.Sub(cutAt))
	}
	if !fencedAt.Before(claimedAt) {
		t.Fatalf("a fenced at %v, b claimed at %v (after the cut)", fencedAt.Sub(cutAt), claimedAt.Sub(cutAt))
	}
	t.Logf("after the cut: a fenced in %v, b claimed in %v (gap %v)",
		fencedAt.Sub(cutAt).Round(time.Millisecond), claimedAt.Sub(cutAt).Round(time.Millisecond), claimedAt.Sub(fencedAt).Round(time.Millisecond))
}

// Nodes placing instances at once never overfill a node: placements are
// written in transactions checked against the view they were computed on.
func TestPlaceInstanceConcurrent(t *testing.T) {
	url := startEtcd(t)
	ctx := testCtx(t)
	for _, n := range []string{"n1", "n2"} {
		s, err := Join(ctx, newClient(t, url), SessionOptions{
			Info: NodeInfo{Node: n, Capacity: Capacity{Instances: 5, MemoryMB: 1000}}, Timing: testTiming,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(ctx) })
	}
	var wg sync.WaitGroup
	results := make([]error, 12)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := newClient(t, url)
			_, results[i] = PlaceInstance(ctx, cli, fmt.Sprintf("api:p%d", i), 100, "")
		}()
	}
	wg.Wait()
	failed := 0
	for _, err := range results {
		if err != nil {
			failed++
			t.Log(err)
		}
	}
	if failed != 2 {
		t.Fatalf("%d placements failed; want 2 (10 slots for 12 instances)", failed)
	}
	nodes, err := Nodes(ctx, newClient(t, url))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Load.Instances != 5 || n.Load.MemoryMB != 500 || n.LeaseTTL <= 0 {
			t.Fatalf("node %s: %+v", n.Node, n)
		}
	}
	// Placed once, an instance keeps its node; --node must be live.
	first, _ := Placements(ctx, newClient(t, url))
	for inst, p := range first {
		if got, err := PlaceInstance(ctx, newClient(t, url), inst, 100, ""); err != nil || got != p.Node {
			t.Fatalf("re-place %s: %q, %v; want %q", inst, got, err, p.Node)
		}
		break
	}
	if _, err := PlaceInstance(ctx, newClient(t, url), "api:new", 1, "gone"); err == nil {
		t.Fatal("placed on a node that is not live")
	}
}

// The first node records the fleet's services; a node whose services
// differ is told how.
func TestCheckServices(t *testing.T) {
	url := startEtcd(t)
	cli := newClient(t, url)
	ctx := testCtx(t)
	first := Fingerprint{"api": "1", "web": "2"}
	if d, err := CheckServices(ctx, cli, first); err != nil || len(d) != 0 {
		t.Fatalf("first node: %v, %v", d, err)
	}
	if d, err := CheckServices(ctx, cli, first); err != nil || len(d) != 0 {
		t.Fatalf("agreeing node: %v, %v", d, err)
	}
	d, err := CheckServices(ctx, cli, Fingerprint{"api": "1", "web": "3"})
	if err != nil || len(d) != 1 || d[0] != "service web: configured differently from the fleet" {
		t.Fatalf("differing node: %q, %v", d, err)
	}
}

// Every node of a fleet reads the same peer key, the first making it; a
// value that is not a secret is refused, not used.
func TestPeerKey(t *testing.T) {
	url := startEtcd(t)
	cli := newClient(t, url)
	ctx := testCtx(t)
	first, err := PeerKey(ctx, cli)
	if err != nil || len(first) != 32 {
		t.Fatalf("first node: %x, %v", first, err)
	}
	again, err := PeerKey(ctx, cli)
	if err != nil || !bytes.Equal(again, first) {
		t.Fatalf("second node: %x, %v; want the first node's %x", again, err, first)
	}
	if _, err := cli.Put(ctx, peerKeyKey, "short"); err != nil {
		t.Fatal(err)
	}
	if k, err := PeerKey(ctx, cli); err == nil {
		t.Fatalf("a peer key that is not a hex secret was taken: %x", k)
	}
}

func TestClientConfig(t *testing.T) {
	f := config.Fleet{EtcdEndpoints: []string{"http://127.0.0.1:2379"}, Node: "n"}
	cc, err := ClientConfig(f)
	if err != nil || cc.TLS != nil {
		t.Fatalf("plain: %+v, %v", cc, err)
	}
	f.CA = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := ClientConfig(f); err == nil || !strings.Contains(err.Error(), "fleet.ca") {
		t.Fatalf("missing CA: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.CA = bad
	if _, err := ClientConfig(f); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Fatalf("bad CA: %v", err)
	}
	f.CA, f.Cert, f.Key = "", bad, bad
	if _, err := ClientConfig(f); err == nil || !strings.Contains(err.Error(), "fleet.cert") {
		t.Fatalf("bad cert: %v", err)
	}
}

// Start records the node, warns when its services differ from the
// fleet's, and the nodes table shows every live node with its load.
func TestStartAndNodesTable(t *testing.T) {
	url := startEtcd(t)
	ctx := testCtx(t)
	conf := func(node, cmd string) *config.Config {
		c, err := config.Parse(node+".toml", []byte(fmt.Sprintf(`
[service.api]
command = %q
[fleet]
etcd_endpoints = [%q]
node = %q
lease_ttl = 2
fence_margin = 1
max_instances = 3
`, cmd, url, node)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, n := range []struct{ node, cmd string }{{"n1", "./api"}, {"n2", "./api-v2"}} {
		cfg := conf(n.node, n.cmd)
		cli, err := Connect(cfg.Fleet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		s, err := Start(ctx, cli, cfg, log, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(ctx) })
	}
	if !strings.Contains(logs.String(), "node=n2") || !strings.Contains(logs.String(), "service api: configured differently") || strings.Contains(logs.String(), "node=n1") {
		t.Fatalf("logs:\n%s", logs.String())
	}
	if _, err := PlaceInstance(ctx, newClient(t, url), "api:a", 0, "n2"); err != nil {
		t.Fatal(err)
	}
	nodes, err := Nodes(ctx, newClient(t, url))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := WriteNodes(&out, nodes); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "n1 ") || !strings.Contains(lines[1], " 0/3 ") ||
		!strings.HasPrefix(lines[2], "n2 ") || !strings.Contains(lines[2], " 1/3 ") {
		t.Fatalf("nodes table:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}

// testCtx bounds every etcd call of a test, so that a lost connection
// fails the test instead of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
