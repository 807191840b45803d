// Package fleet holds ten's multi-node test: three nodes, each a private
// systemd (internal/box) in its own network namespace running `ten serve`
// and one member of a three-member etcd cluster, linked by a bridge in a
// namespace of the test's own. It drives the nodes as a user would (the
// ten CLI in each node, HTTP to each node's router) and checks every
// node's systemd.
package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tenhq/ten/internal/box"
	"github.com/tenhq/ten/internal/tentest"
)

// Inside every node the binaries, config and data live under base (the
// box's own /run, where sandboxed instances can read them).
const base = "/run/ten-fleet"

// Fleet timing of the test: a node's lease outlives its last keep-alive by
// leaseTTL; a cut-off node fences fenceMargin before that.
const (
	leaseTTL    = 8
	fenceMargin = 3
	// moveWithin is how long a lost node's stateless instance may take to
	// answer from another node: the lease's end (leaseTTL after the last
	// keep-alive), the move and claim (a few etcd round trips), and the
	// instance's creation, with room for a loaded test machine.
	moveWithin = 20 * time.Second
)

var root string

func TestMain(m *testing.M) {
	var err error
	root, err = tentest.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Getenv(box.EnvInside) == "" && os.Getenv("TEN_UNIT_ONLY") == "" && os.Geteuid() == 0 {
		for _, b := range [][2]string{{"ten", "./cmd/ten"}, {"ten-shim", "./cmd/ten-shim"}, {"echoapp", "./test/apps/echoapp"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(root, "bin", "fleet", b[0]), b[1])
			cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n", b[0], err)
				os.Exit(1)
			}
		}
	}
	os.Exit(m.Run())
}

// require skips (or fails under TEN_REQUIRE_SYSTEM=1) where boxes cannot
// boot or etcd is not installed.
func require(t testing.TB) {
	t.Helper()
	why := ""
	if err := box.Reason(); err != nil {
		why = err.Error()
	} else if _, err := exec.LookPath("etcd"); err != nil {
		why = "etcd not found (install etcd-server)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "ip not found (install iproute2)"
	}
	if why == "" {
		return
	}
	if os.Getenv("TEN_REQUIRE_SYSTEM") == "1" {
		t.Fatal(why + " (TEN_REQUIRE_SYSTEM=1)")
	}
	t.Skip(why)
}

// node is one fleet node: a box with its etcd member and its ten serve.
type node struct {
	t    testing.TB
	name string
	ip   string
	b    *box.Box
	// hubLink is the node's end of the bridge, in the hub's namespace.
	hubLink string
	// closed: the node was killed (its box closed).
	closed bool

	ten     *exec.Cmd
	tenDone chan struct{}
	// tenKill kills ten serve inside the node (SIGKILL, as a crash).
	tenKill context.CancelFunc
	tenLog  *tentest.SyncBuffer
	etcdLog *tentest.SyncBuffer
	// etcd is the node's etcd member; etcdDone is closed when it exits.
	etcd     *exec.Cmd
	etcdDone chan struct{}
	http     *http.Client
}

func (n *node) path(p string) string { return fmt.Sprintf("/proc/%d/root%s", n.b.PID(), p) }

// run runs a command inside the node and returns its combined output.
func (n *node) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := n.b.Command(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (n *node) must(name string, args ...string) string {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.run(ctx, name, args...)
	if err != nil {
		n.t.Fatalf("%s: %s %s: %v\n%s", n.name, name, strings.Join(args, " "), err, out)
	}
	return out
}

// cli runs the ten CLI in the node against its own ten serve.
func (n *node) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"--server", "http://" + n.ip + ":8080", "--config", base + "/tenement.toml"}, args...)
	return n.run(ctx, base+"/bin/ten", full...)
}

func (n *node) mustCLI(args ...string) string {
	n.t.Helper()
	out, err := n.cli(args...)
	if err != nil {
		n.t.Fatalf("%s: ten %s: %v\n%s", n.name, strings.Join(args, " "), err, out)
	}
	return out
}

// running lists the instances whose service unit is running in the node's
// systemd (active, activating, deactivating or reloading).
func (n *node) running(ctx context.Context) ([]string, error) {
	out, err := n.run(ctx, "systemctl", "list-units", "--plain", "--no-legend", "--state=active,activating,deactivating,reloading", "tenement-*.service")
	if err != nil {
		return nil, fmt.Errorf("%s: systemctl: %v: %s", n.name, err, out)
	}
	var insts []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		unit := strings.TrimSuffix(strings.TrimPrefix(f[0], "tenement-"), ".service")
		svc, id, ok := strings.Cut(unit, "@")
		if ok {
			insts = append(insts, svc+":"+id)
		}
	}
	return insts, nil
}

// get sends GET path for host to this node's router from client's network
// namespace, and returns the status and body.
func (n *node) get(from *node, host, path string, hdr ...string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+n.ip+":8080"+path, nil)
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := from.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// cluster is the three nodes, the hub namespace that links them, and the
// etcd cluster across them.
type cluster struct {
	t     testing.TB
	nodes []*node
	hub   *exec.Cmd // holds the hub's network namespace
}

func (c *cluster) hubIP(args ...string) {
	c.t.Helper()
	full := append([]string{"-t", fmt.Sprint(c.hub.Process.Pid), "-n", "ip"}, args...)
	if out, err := exec.Command("nsenter", full...).CombinedOutput(); err != nil {
		c.t.Fatalf("hub: ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *cluster) endpoints() string {
	var eps []string
	for _, n := range c.nodes {
		eps = append(eps, fmt.Sprintf("%q", "http://"+n.ip+":2379"))
	}
	return strings.Join(eps, ", ")
}

// newCluster boots the nodes, links them, starts etcd in each and then
// ten serve in each.
func newCluster(t testing.TB, services string) *cluster {
	t.Helper()
	c := &cluster{t: t}
	// The hub: a network namespace of the test's own, held by a sleeping
	// process that dies with the test (never the host's namespace).
	c.hub = exec.Command("unshare", "--net", "--", "sleep", "infinity")
	c.hub.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started, hubDone := make(chan error, 1), make(chan struct{})
	go func() {
		// Pdeathsig fires when the thread that forked ends, and Go ends
		// threads (those a box's Dial locked): this one lives as long as
		// the hub.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(hubDone)
		if err := c.hub.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = c.hub.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.hub.Process.Kill(); <-hubDone })
	// nsenter must find the new namespace, never the host's: wait until
	// unshare has made it.
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", c.hub.Process.Pid)); err == nil && ns != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --net made no network namespace within 10s")
		}
	}
	c.hubIP("link", "add", "br0", "type", "bridge")
	c.hubIP("link", "set", "br0", "up")

	c.nodes = make([]*node, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range c.nodes {
		n := &node{t: t, name: fmt.Sprintf("n%d", i+1), ip: fmt.Sprintf("10.99.0.%d", i+1), hubLink: fmt.Sprintf("vn%d", i+1),
			tenLog: &tentest.SyncBuffer{}, etcdLog: &tentest.SyncBuffer{}}
		c.nodes[i] = n
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			n.b, errs[i] = box.Boot(ctx, box.Options{Name: "ten-fleet-" + n.name, RW: []string{root}})
		}()
	}
	wg.Wait()
	for i, n := range c.nodes {
		if errs[i] != nil {
			t.Fatalf("boot node %s: %v", n.name, errs[i])
		}
		t.Cleanup(func() {
			n.stopTen()
			if t.Failed() {
				t.Logf("node %s: ten serve log:\n%s", n.name, n.tenLog.String())
			}
			_ = n.b.Close()
		})
		b := n.b
		n.http = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return b.Dial(ctx, network, addr) },
		}}
	}
	// Link each node to the hub's bridge: eth0 in the node, vnN on the hub.
	for _, n := range c.nodes {
		c.hubIP("link", "add", n.hubLink, "type", "veth", "peer", "name", "eth0", "netns", fmt.Sprint(n.b.PID()))
		c.hubIP("link", "set", n.hubLink, "master", "br0", "up")
		n.must("ip", "addr", "add", n.ip+"/24", "dev", "eth0")
		n.must("ip", "link", "set", "eth0", "up")
	}
	// Each node reaches the others before anything starts.
	for _, n := range c.nodes {
		for _, o := range c.nodes {
			deadline := time.Now().Add(10 * time.Second)
			for {
				// Nothing listens on port 9: a refusal proves the path.
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				conn, err := n.b.Dial(ctx, "tcp", o.ip+":9")
				cancel()
				if conn != nil {
					conn.Close()
				}
				if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s cannot reach %s: %v\n%s", n.name, o.name, err, n.must("ip", "addr"))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	// Files: binaries, config.
	for _, n := range c.nodes {
		if err := os.MkdirAll(n.path(base+"/bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, bin := range []string{"ten", "ten-shim", "echoapp"} {
			data, err := os.ReadFile(filepath.Join(root, "bin", "fleet", bin))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(n.path(base+"/bin/"+bin), data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		os.Chmod(n.path(base), 0o755)
		// n3's address is also a trusted proxy's (a Caddy there, in
		// front of the fleet): its X-Forwarded-For is kept, through a
		// forward too.
		cfg := fmt.Sprintf(`[settings]
data_dir = %q
listen = "0.0.0.0:8080"
domain = "fleet.test"
health_check_interval = 1
backoff_base_ms = 200
max_restarts = 2
trusted_proxies = [%q]

%s

[fleet]
etcd_endpoints = [%s]
node = %q
addr = "%s:8080"
lease_ttl = %d
fence_margin = %d
`, base+"/data", c.nodes[2].ip, strings.ReplaceAll(services, "ECHO", base+"/bin/echoapp"), c.endpoints(), n.name, n.ip, leaseTTL, fenceMargin)
		if err := os.WriteFile(n.path(base+"/tenement.toml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.startEtcd()
	for _, n := range c.nodes {
		n.startTen()
	}
	return c
}

// startEtcd starts one member in every node and waits for the cluster.
func (c *cluster) startEtcd() {
	c.t.Helper()
	for _, n := range c.nodes {
		n.startEtcd(c.nodes, "new")
	}
	for _, n := range c.nodes {
		n.waitEtcd(30 * time.Second)
	}
}

// startEtcd starts the node's etcd member (state "new" the first time,
// "existing" on a restart: its data dir knows the cluster then).
func (n *node) startEtcd(all []*node, state string) {
	n.t.Helper()
	var initial []string
	for _, o := range all {
		initial = append(initial, "m"+o.name+"=http://"+o.ip+":2380")
	}
	cmd := n.b.Command(context.Background(), "etcd", "--name", "m"+n.name, "--data-dir", base+"/etcd",
		"--listen-client-urls", "http://"+n.ip+":2379", "--advertise-client-urls", "http://"+n.ip+":2379",
		"--listen-peer-urls", "http://"+n.ip+":2380", "--initial-advertise-peer-urls", "http://"+n.ip+":2380",
		"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", state,
		"--initial-cluster-token", "ten-fleet-test", "--heartbeat-interval", "100", "--election-timeout", "1000",
		// A member back from a partition does not depose the leader
		// (etcd 3.5's default; Debian 12 has 3.4).
		"--pre-vote",
		"--log-level", "error", "--logger", "zap")
	cmd.Stdout, cmd.Stderr = n.etcdLog, n.etcdLog
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if n.etcd == nil { // first start: one cleanup kills whichever member runs then
		n.t.Cleanup(func() { n.stopEtcd(syscall.SIGKILL) })
	}
	n.etcd, n.etcdDone = cmd, done
}

// stopEtcd stops the node's etcd member with sig and waits for it.
func (n *node) stopEtcd(sig syscall.Signal) {
	if n.etcd == nil || n.etcd.Process == nil {
		return
	}
	_ = n.etcd.Process.Signal(sig)
	<-n.etcdDone
}

// waitEtcd waits until the node's member reports itself healthy (it is
// part of a cluster with a leader).
func (n *node) waitEtcd(within time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := n.http.Get("http://" + n.ip + ":2379/health")
		out := ""
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out = string(b)
			if strings.Contains(out, `"health":"true"`) {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("etcd member of %s not healthy: %v %s\n%s\n%s\n%s", n.name, err, out, n.etcdLog.String(), n.must("ip", "addr"), n.must("journalctl", "-b", "--no-pager", "-n", "60"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (n *node) startTen() {
	n.t.Helper()
	n.tenDone = make(chan struct{})
	var ctx context.Context
	ctx, n.tenKill = context.WithCancel(context.Background())
	n.ten = n.b.Command(ctx, base+"/bin/ten", "serve", "--config", base+"/tenement.toml")
	n.ten.Stdout, n.ten.Stderr = n.tenLog, n.tenLog
	if err := n.ten.Start(); err != nil {
		n.t.Fatal(err)
	}
	cmd, done := n.ten, n.tenDone
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			n.t.Fatalf("%s: ten serve exited\n%s", n.name, n.tenLog.String())
		default:
		}
		if code, _, err := n.get(n, n.ip, "/health"); err == nil && code == 200 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.t.Fatalf("%s: ten serve did not answer /health\n%s", n.name, n.tenLog.String())
}

func (n *node) stopTen() {
	if n.ten != nil && n.ten.Process != nil {
		n.tenKill()
		<-n.tenDone
	}
}

// info is echoapp's /info answer.
type info struct {
	Instance string `json:"instance"`
	PID      int    `json:"pid"`
	XFF      string `json:"x_forwarded_for"`
	// FleetAuth is the X-Ten-Fleet-Auth the app was sent: always "".
	FleetAuth string `json:"x_ten_fleet_auth"`
}

// waitInfo asks node at for host's /info from client until it answers
// 200, and returns the answer and how long that took.
func waitInfo(t *testing.T, at, client *node, host string, within time.Duration) (info, time.Duration) {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < within {
		code, body, err := at.get(client, host, "/info")
		if err == nil && code == 200 {
			var in info
			if err := json.Unmarshal([]byte(body), &in); err != nil {
				t.Fatalf("GET %s/info: %v: %s", host, err, body)
			}
			return in, time.Since(start)
		}
		last = fmt.Sprintf("%d %v %s", code, err, strings.TrimSpace(body))
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s/info at %s did not answer 200 within %s; last: %s", host, at.name, within, last)
	return info{}, 0
}

// runsOn returns the nodes whose systemd runs inst now.
func (c *cluster) runsOn(t *testing.T, inst string) []string {
	t.Helper()
	var on []string
	for _, n := range c.nodes {
		if n.closed {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		insts, err := n.running(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range insts {
			if i == inst {
				on = append(on, n.name)
			}
		}
	}
	return on
}

// span is a time a service unit may have run on a node: from systemd's
// "Starting" to its "Stopped", "Deactivated" or "Failed" (or now), in the
// kernel's monotonic clock, which every box shares.
type span struct {
	node       string
	start, end uint64
}

// Message ids of systemd's unit messages (sd-messages.h).
const (
	msgStarting    = "7d4958e842da4a758f6c1cdc7b36dcc5"
	msgStopped     = "9d1aaa27d60140bd96365438aad20286"
	msgDeactivated = "7ad2d189f7e94e70a38c781354912448"
	msgFailed      = "d9b373ed55a64feb8242e02dbe79a49c"
)

// spans reads from the node's journal every span in which an instance's
// service may have run, keyed by instance.
func (n *node) spans(t *testing.T) map[string][]span {
	t.Helper()
	out := n.must("journalctl", "-o", "json", "--no-pager", "--output-fields=MESSAGE_ID,UNIT", "_PID=1")
	open := map[string]uint64{}
	res := map[string][]span{}
	for _, line := range strings.Split(out, "\n") {
		var e struct {
			ID   string `json:"MESSAGE_ID"`
			Unit string `json:"UNIT"`
			Mono string `json:"__MONOTONIC_TIMESTAMP"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || !strings.HasPrefix(e.Unit, "tenement-") || !strings.HasSuffix(e.Unit, ".service") {
			continue
		}
		var mono uint64
		fmt.Sscan(e.Mono, &mono)
		svc, id, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(e.Unit, "tenement-"), ".service"), "@")
		inst := svc + ":" + id
		switch e.ID {
		case msgStarting:
			if _, ok := open[inst]; !ok {
				open[inst] = mono
			}
		case msgStopped, msgDeactivated, msgFailed:
			if st, ok := open[inst]; ok {
				res[inst] = append(res[inst], span{node: n.name, start: st, end: mono})
				delete(open, inst)
			}
		}
	}
	for inst, st := range open {
		res[inst] = append(res[inst], span{node: n.name, start: st, end: ^uint64(0)})
	}
	return res
}

// overlaps lists every instance whose spans on two different nodes overlap.
func overlaps(all ...map[string][]span) []string {
	by := map[string][]span{}
	for _, m := range all {
		for inst, ss := range m {
			by[inst] = append(by[inst], ss...)
		}
	}
	var out []string
	for inst, ss := range by {
		for i := range ss {
			for j := i + 1; j < len(ss); j++ {
				a, b := ss[i], ss[j]
				if a.node != b.node && a.start < b.end && b.start < a.end {
					out = append(out, fmt.Sprintf("%s on %s [%d, %d] and %s [%d, %d] (µs)", inst, a.node, a.start, a.end, b.node, b.start, b.end))
				}
			}
		}
	}
	return out
}

const services = `[service.web]
command = "ECHO"
isolation = "process"

[service.db]
command = "ECHO"
isolation = "process"
storage_persist = true

[service.crash]
command = "ECHO --mode activation --crash-after 700ms"
activation = "socket"
health = "/health"
`

// TestFleet: spawn and route across nodes; ps on any node; a node cut off
// from etcd fences its instances, a stateless one answers from another
// node, nothing runs twice; it rejoins and takes new work; a killed node's
// stateless instance answers from another node within moveWithin.
func TestFleet(t *testing.T) {
	require(t)
	c := newCluster(t, services)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]

	out := n1.mustCLI("nodes")
	for _, n := range c.nodes {
		if !strings.Contains(out, n.name+" ") {
			t.Fatalf("ten nodes on n1 lacks %s:\n%s", n.name, out)
		}
	}

	// Spawn on any node: placed by --node or by free capacity; created by
	// the placed node.
	out = n1.mustCLI("spawn", "web:a", "--node", "n2")
	if !strings.Contains(out, "n2") {
		t.Fatalf("ten spawn web:a --node n2 on n1 does not name n2:\n%s", out)
	}
	n1.mustCLI("spawn", "web:b", "--node", "n3")
	n2.mustCLI("spawn", "db:x", "--node", "n3")
	n3.mustCLI("spawn", "web:c") // free capacity: the emptiest node, n1
	for inst, want := range map[string]string{"web:a": "n2", "web:b": "n3", "db:x": "n3", "web:c": "n1"} {
		if on := c.runsOn(t, inst); len(on) != 1 || on[0] != want {
			t.Fatalf("%s runs on %v, want [%s]", inst, on, want)
		}
	}
	// Spawning an instance that is placed already succeeds and changes
	// nothing, as on a single node; asked for on another node, it fails.
	if out := n2.mustCLI("spawn", "web:b"); !strings.Contains(out, "it existed already") || !strings.Contains(out, "n3") {
		t.Fatalf("ten spawn web:b again, from n2:\n%s", out)
	}
	if out, err := n1.cli("spawn", "web:b", "--node", "n1"); err == nil || !strings.Contains(out, "n3") {
		t.Fatalf("ten spawn web:b --node n1 while it is on n3: err %v, want an error naming n3:\n%s", err, out)
	}
	if on := c.runsOn(t, "web:b"); len(on) != 1 || on[0] != "n3" {
		t.Fatalf("web:b runs on %v after spawning it again, want [n3]", on)
	}
	if out, err := n1.cli("spawn", "web:z", "--node", "n9"); err == nil || !strings.Contains(out, "n9") {
		t.Fatalf("spawn on a node that is not live: err %v, want an error naming n9:\n%s", err, out)
	}
	if on := c.runsOn(t, "web:z"); len(on) != 0 {
		t.Fatalf("a refused spawn runs on %v", on)
	}

	// ps on any node lists every instance with its node.
	for _, n := range c.nodes {
		out := n.mustCLI("ps", "--all")
		if !strings.HasPrefix(out, "NODE") {
			t.Fatalf("ten ps on %s has no NODE column:\n%s", n.name, out)
		}
		for inst, want := range map[string]string{"web:a": "n2", "web:b": "n3", "db:x": "n3", "web:c": "n1"} {
			if !psHas(out, want, inst) {
				t.Fatalf("ten ps on %s lacks %s on %s:\n%s", n.name, inst, want, out)
			}
		}
	}

	// Any node routes any instance; the app sees the client first in
	// X-Forwarded-For; a forwarded request is never forwarded again.
	in, _ := waitInfo(t, n1, n3, "a.web.fleet.test", 10*time.Second)
	if in.Instance != "web:a" || !strings.HasPrefix(in.XFF, n3.ip+",") || !strings.Contains(in.XFF, n1.ip) {
		t.Fatalf("web:a through n1 from n3: %+v; want X-Forwarded-For %s (the client), then %s", in, n3.ip, n1.ip)
	}
	if in.FleetAuth != "" {
		t.Fatalf("web:a, forwarded by n1 to n2, was sent the fleet's token %q", in.FleetAuth)
	}
	// A trusted proxy's client (n3 is one) stays first through a forward.
	code, body, err := n1.get(n3, "a.web.fleet.test", "/info", "X-Forwarded-For", "203.0.113.9")
	if err := json.Unmarshal([]byte(body), &in); code != 200 || err != nil || in.XFF != "203.0.113.9, "+n3.ip+", "+n1.ip {
		t.Fatalf("web:a through n1 from n3 as a trusted proxy of client 203.0.113.9: %d %s; want X-Forwarded-For 203.0.113.9, %s, %s", code, body, n3.ip, n1.ip)
	}
	// An app on n1 connects from n1's address, as n1's router does, and
	// can copy the hop header, but not the fleet's token: at n2 the
	// client it names is dropped, and only the router's token passes.
	code, body, err = n2.get(n1, "a.web.fleet.test", "/info", "X-Ten-Fleet-Hop", "n1", "X-Forwarded-For", "198.51.100.77", "X-Ten-Fleet-Auth", strings.Repeat("0", 64))
	if err := json.Unmarshal([]byte(body), &in); code != 200 || err != nil || in.XFF != n1.ip {
		t.Fatalf("web:a at n2 from n1's address with the hop header but no token, naming 198.51.100.77: %d %s; want X-Forwarded-For %s alone", code, body, n1.ip)
	}
	for _, at := range c.nodes {
		in, _ := waitInfo(t, at, n1, "c.web.fleet.test", 10*time.Second)
		if in.Instance != "web:c" {
			t.Fatalf("c.web at %s answered %+v", at.name, in)
		}
	}
	code, body, err = n1.get(n1, "a.web.fleet.test", "/info", "X-Ten-Fleet-Hop", "n3")
	if err != nil || code != http.StatusBadGateway || !strings.Contains(body, "not forwarding again") {
		t.Fatalf("a request marked as forwarded, for an instance elsewhere: %d %v %s; want 502 (loop guard)", code, err, body)
	}

	sharedState(t, c)
	apiOnOwner(t, c)
	serviceAcrossNodes(t, c)
	etcdRestartsUnderLoad(t, c)

	// A new id of a declared service, asked at n3: placed by free capacity
	// (n1, the emptiest), created there, and the request forwarded to it.
	in, _ = waitInfo(t, n3, n2, "new1.web.fleet.test", 30*time.Second)
	if in.Instance != "web:new1" {
		t.Fatalf("new1.web at n3 answered %+v", in)
	}
	if on := c.runsOn(t, "web:new1"); len(on) != 1 || on[0] != "n1" {
		t.Fatalf("web:new1 (created by a request at n3) runs on %v, want [n1]", on)
	}

	// Cut n3 off (its link down: it reaches neither etcd nor the other
	// nodes). It fences: its systemd runs nothing of the fleet before its
	// lease can end; web:b answers from another node; db:x (local data)
	// stays placed on n3; nothing runs twice meanwhile.
	cut := time.Now()
	c.hubIP("link", "set", n3.hubLink, "down")
	fencedAt := time.Duration(0)
	for time.Since(cut) < time.Duration(leaseTTL)*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		insts, err := n3.running(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(insts) == 0 {
			fencedAt = time.Since(cut)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if fencedAt == 0 {
		t.Fatalf("n3 still runs instances %s after it was cut off from etcd (lease_ttl %ds)", strings.Join(c.runsOn(t, "web:b"), ","), leaseTTL)
	}
	t.Logf("n3 cut off: its instances stopped %s later", fencedAt.Round(time.Millisecond))
	in, took := waitInfo(t, n1, n2, "b.web.fleet.test", moveWithin)
	t.Logf("web:b (stateless) answered from another node %s after n3 was cut off", (time.Since(cut) - 0).Round(100*time.Millisecond))
	_ = took
	if on := c.runsOn(t, "web:b"); len(on) != 1 || on[0] == "n3" {
		t.Fatalf("web:b runs on %v after n3 was cut off", on)
	}
	code, body, _ = n1.get(n2, "x.db.fleet.test", "/info")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "n3") {
		t.Fatalf("db:x (storage_persist) while n3 is cut off: %d %s; want 503 naming n3", code, body)
	}
	if on := c.runsOn(t, "db:x"); len(on) != 0 {
		t.Fatalf("db:x runs on %v while its node n3 is cut off; it must not move", on)
	}

	// Rejoin: n3 joins again, takes db:x back and takes new work.
	c.hubIP("link", "set", n3.hubLink, "up")
	in, took = waitInfo(t, n1, n2, "x.db.fleet.test", 30*time.Second)
	t.Logf("n3 back: db:x answered again %s later", took.Round(100*time.Millisecond))
	if on := c.runsOn(t, "db:x"); len(on) != 1 || on[0] != "n3" {
		t.Fatalf("db:x runs on %v after n3 rejoined, want [n3]", on)
	}
	n1.mustCLI("spawn", "web:d", "--node", "n3")
	if on := c.runsOn(t, "web:d"); len(on) != 1 || on[0] != "n3" {
		t.Fatalf("web:d runs on %v, want [n3]", on)
	}
	// Nothing ran on two nodes at once: every node's journal says when
	// each service ran (n2's read now, before it is killed).
	n2spans, n3spans := n2.spans(t), n3.spans(t)
	if len(n3spans["web:b"]) == 0 || len(n3spans["db:x"]) < 2 {
		t.Fatalf("n3's journal shows web:b ran %v and db:x %v; want once and twice (before the cut and after)", n3spans["web:b"], n3spans["db:x"])
	}
	if tw := overlaps(n1.spans(t), n2spans, n3spans); len(tw) > 0 {
		t.Fatalf("instances ran on two nodes at once:\n%s", strings.Join(tw, "\n"))
	}

	// Kill n2 (the whole box: its ten, its instances, its etcd member).
	// web:a answers from another node within moveWithin.
	killed := time.Now()
	n2.closed = true
	_ = n2.b.Close()
	// Whatever ran on n2 ended with its box.
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	for inst, ss := range n2spans {
		for i := range ss {
			ss[i].end = min(ss[i].end, uint64(ts.Nano()/1000))
		}
		n2spans[inst] = ss
	}
	in, _ = waitInfo(t, n1, n3, "a.web.fleet.test", moveWithin)
	moved := time.Since(killed)
	t.Logf("n2 killed: web:a answered from another node %s later (lease_ttl %ds)", moved.Round(100*time.Millisecond), leaseTTL)
	if on := c.runsOn(t, "web:a"); len(on) != 1 || on[0] == "n2" {
		t.Fatalf("web:a runs on %v after n2 was killed", on)
	}
	_ = in

	// ten killed and restarted at once on n1: its earlier session never
	// fenced; the new ten stops what it left before that session's lease
	// ends, and web:c answers again from one node.
	restarted := time.Now()
	n1.stopTen()
	n1.startTen()
	waitInfo(t, n3, n3, "c.web.fleet.test", 30*time.Second)
	t.Logf("ten on n1 killed and restarted: web:c answered again %s later", time.Since(restarted).Round(100*time.Millisecond))
	if tw := overlaps(n1.spans(t), n2spans, n3.spans(t)); len(tw) > 0 {
		t.Fatalf("instances ran on two nodes at once:\n%s", strings.Join(tw, "\n"))
	}
	if on := c.runsOn(t, "web:c"); len(on) != 1 {
		t.Fatalf("web:c runs on %v after ten on n1 was restarted", on)
	}

	// Stop from any node: the owning node removes it, after the requests
	// in flight to it finished (a stream of 2 s here, asked at another
	// node and forwarded), as a stop outside a fleet does.
	waitInfo(t, n1, n3, "d.web.fleet.test", 30*time.Second)
	streamed := make(chan string, 1)
	go func() {
		code, body, err := n1.get(n3, "d.web.fleet.test", "/stream?n=4&ms=500")
		streamed <- fmt.Sprintf("%d %v %d chunks", code, err, strings.Count(body, "chunk "))
	}()
	time.Sleep(300 * time.Millisecond)
	n1.mustCLI("stop", "web:d")
	if got := <-streamed; got != "200 <nil> 4 chunks" {
		t.Errorf("a request in flight to web:d during ten stop: %s, want 200 <nil> 4 chunks", got)
	}
	if on := c.runsOn(t, "web:d"); len(on) != 0 {
		t.Fatalf("web:d still runs on %v after ten stop on n1", on)
	}
}

// sharedState: a token made on one node authenticates on every node and,
// revoked on another, on none; a weight set on a node that does not run
// the instance is the weight its node routes by and every ps shows; a
// failed mark set by the owning node's health loop shows in every node's
// ps, and every node answers 503 for it.
func sharedState(t *testing.T, c *cluster) {
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	out := n1.mustCLI("token-gen", "--tenant", "a", "--description", "fleet test")
	var secret, id string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.TrimSpace(line); strings.HasPrefix(f, "ten_") {
			secret = f
			id = strings.SplitN(f, "_", 3)[1]
		}
	}
	if secret == "" {
		t.Fatalf("ten token-gen on n1 printed no token:\n%s", out)
	}
	status := func(n *node) (int, string) {
		code, body, err := n.get(n, n.ip, "/api/instances", "Authorization", "Bearer "+secret)
		if err != nil {
			t.Fatalf("%s: GET /api/instances: %v", n.name, err)
		}
		return code, body
	}
	for _, n := range c.nodes {
		code, body := status(n)
		if code != http.StatusOK || !strings.Contains(body, `"web:a"`) || strings.Contains(body, `"web:c"`) {
			t.Fatalf("tenant token made on n1, at %s: %d %s; want 200 listing web:a only (tenant a)", n.name, code, body)
		}
	}
	n3.mustCLI("token", "revoke", id)
	for _, n := range c.nodes {
		var code int
		var body string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if code, body = status(n); code == http.StatusUnauthorized {
				break
			}
		}
		if code != http.StatusUnauthorized {
			t.Fatalf("token made on n1 and revoked on n3, at %s: %d %s; want 401", n.name, code, body)
		}
	}
	for _, n := range c.nodes {
		if b, err := os.ReadFile(n.path(base + "/data/tokens.json")); err == nil && strings.Contains(string(b), id) {
			t.Fatalf("the fleet's token %s is in %s's tokens.json:\n%s", id, n.name, b)
		}
	}

	// web:a runs on n2; its weight is set on n3.
	n3.mustCLI("weight", "web:a", "30")
	for _, n := range c.nodes {
		waitRow(t, n, "web:a", 5*time.Second, func(r psRow) bool { return r.Weight == 30 })
	}
	if row := waitRow(t, n2, "web:a", time.Second, func(r psRow) bool { return r.Weight == 30 }); row.State == "remote" {
		t.Fatalf("n2 shows web:a as remote: %+v", row)
	}
	if out, err := n1.cli("weight", "web:nosuch", "30"); err == nil {
		t.Fatalf("weight for an instance placed nowhere: no error\n%s", out)
	}

	// crash:f on n2 crashes 700 ms after each start; woken through n1, it
	// uses up max_restarts and n2's health loop marks it failed.
	n1.mustCLI("spawn", "crash:f", "--node", "n2")
	start := time.Now()
	for time.Since(start) < 60*time.Second {
		_, _, _ = n2.get(n1, "f.crash.fleet.test", "/")
		if r, ok := psRowOf(t, n1, "crash:f"); ok && r.Health == "failed" {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, n := range c.nodes {
		row := waitRow(t, n, "crash:f", 5*time.Second, func(r psRow) bool { return r.Health == "failed" })
		if row.State != "failed" || !strings.Contains(row.Detail, "max_restarts 2") {
			t.Fatalf("crash:f in %s's ps: %+v; want failed naming max_restarts", n.name, row)
		}
		code, body, err := n.get(n1, "f.crash.fleet.test", "/info")
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "crash:f failed") {
			t.Fatalf("crash:f (failed) through %s: %d %v %s; want 503 saying it failed", n.name, code, err, body)
		}
	}
	t.Logf("crash:f marked failed on n2, seen failed on every node %s after its spawn", time.Since(start).Round(100*time.Millisecond))
	n1.mustCLI("stop", "crash:f")
}

// apiOnOwner: restart, health and logs asked on a node that does not run
// the instance act on (and answer from) the node that does, with the CLI's
// own token (each node's api_token file token is admin on every node).
func apiOnOwner(t *testing.T, c *cluster) {
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	// web:a runs on n2.
	before, _ := waitInfo(t, n2, n2, "a.web.fleet.test", 10*time.Second)
	if code, body, err := n2.get(n2, "a.web.fleet.test", "/log?msg=fleet-log-line-7f3a"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /log of web:a: %d %v %s", code, err, body)
	}
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out = n1.mustCLI("logs", "web:a")
		if strings.Contains(out, "fleet-log-line-7f3a") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ten logs web:a on n1 (web:a runs on n2) lacks the line web:a logged on n2:\n%s", out)
		}
	}
	out = n3.mustCLI("health", "web:a")
	if !strings.Contains(out, "web:a") || !strings.Contains(out, "running") {
		t.Fatalf("ten health web:a on n3 (web:a runs on n2):\n%s", out)
	}
	n1.mustCLI("restart", "web:a")
	after, _ := waitInfo(t, n2, n2, "a.web.fleet.test", 10*time.Second)
	if after.PID == before.PID {
		t.Fatalf("ten restart web:a on n1: web:a on n2 has the same pid %d", after.PID)
	}
	if on := c.runsOn(t, "web:a"); len(on) != 1 || on[0] != "n2" {
		t.Fatalf("web:a runs on %v after a restart asked on n1, want [n2]", on)
	}
	// deploy and route do not know the fleet yet: refused, nothing changes.
	rowsBefore := n1.mustCLI("ps", "--all")
	if out, err := n1.cli("deploy", "web:v9"); err == nil || !strings.Contains(out, "not available in a fleet") {
		t.Fatalf("ten deploy on a fleet node: %v\n%s", err, out)
	}
	if out, err := n3.cli("route", "web", "--from", "a", "--to", "b"); err == nil || !strings.Contains(out, "not available in a fleet") {
		t.Fatalf("ten route on a fleet node: %v\n%s", err, out)
	}
	if rows := n1.mustCLI("ps", "--all"); strings.Contains(rows, "web:v9") || strings.Count(rows, "\n") != strings.Count(rowsBefore, "\n") {
		t.Fatalf("a refused deploy changed ps:\nbefore\n%s\nafter\n%s", rowsBefore, rows)
	}
	// A call a node was forwarded is not forwarded again.
	code, body, err := n1.get(n1, n1.ip, "/api/instances/web:a/health", "Authorization", "Bearer "+strings.TrimSpace(readFile(t, n1.path(base+"/data/api_token"))), "X-Ten-Fleet-Hop", "n3")
	if err != nil || code != http.StatusConflict || !strings.Contains(body, "n2") {
		t.Fatalf("a forwarded call for an instance elsewhere: %d %v %s; want 409 naming n2", code, err, body)
	}
}

// serviceAcrossNodes: {service}.DOMAIN at any node is shared among the
// service's instances on every node by their weights.
func serviceAcrossNodes(t *testing.T, c *cluster) {
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	// db has one instance, db:x on n3: n1 and n2 have none of their own.
	for _, at := range []*node{n1, n2} {
		in, _ := waitInfo(t, at, at, "db.fleet.test", 10*time.Second)
		if in.Instance != "db:x" {
			t.Fatalf("db.fleet.test at %s answered %+v, want db:x (on n3)", at.name, in)
		}
	}
	// web: web:a on n2 (weight 30, set earlier), web:b on n3 (0), web:c
	// on n1 (70). Asked at n3, which has no instance with weight above 0.
	n1.mustCLI("weight", "web:b", "0")
	n2.mustCLI("weight", "web:c", "70")
	for _, n := range c.nodes {
		waitRow(t, n, "web:b", 5*time.Second, func(r psRow) bool { return r.Weight == 0 })
		waitRow(t, n, "web:c", 5*time.Second, func(r psRow) bool { return r.Weight == 70 })
	}
	counts := map[string]int{}
	const total = 300
	for range total {
		code, body, err := n3.get(n3, "web.fleet.test", "/info")
		if err != nil || code != http.StatusOK {
			t.Fatalf("web.fleet.test at n3: %d %v %s", code, err, body)
		}
		var in info
		if err := json.Unmarshal([]byte(body), &in); err != nil {
			t.Fatal(err)
		}
		counts[in.Instance]++
	}
	t.Logf("web.fleet.test at n3, %d requests: %v (weights web:a 30 on n2, web:b 0 on n3, web:c 70 on n1)", total, counts)
	// web:a expects 90 of 300 (sd 7.9): 50 to 130 is 5 sd either side.
	if counts["web:b"] != 0 || counts["web:a"] < 50 || counts["web:a"] > 130 || counts["web:a"]+counts["web:c"] != total {
		t.Fatalf("web.fleet.test at n3: %v; want about 30%% web:a, 70%% web:c, no web:b", counts)
	}
	n1.mustCLI("weight", "web:b", "100")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// etcdRestartsUnderLoad restarts the etcd members one at a time while
// clients keep asking every node for every instance (none of which moves):
// routing needs no etcd per request, and no node loses its lease, so not
// one request may fail.
func etcdRestartsUnderLoad(t *testing.T, c *cluster) {
	insts := map[string]string{"a.web.fleet.test": "web:a", "b.web.fleet.test": "web:b", "c.web.fleet.test": "web:c"}
	before := map[string][]string{}
	for _, inst := range insts {
		before[inst] = c.runsOn(t, inst)
	}
	var mu sync.Mutex
	var total, failed int
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, at := range c.nodes {
		for host, inst := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					code, body, err := at.get(at, host, "/info")
					ok := err == nil && code == http.StatusOK && strings.Contains(body, `"`+inst+`"`)
					mu.Lock()
					total++
					if !ok {
						failed++
						if len(failures) < 10 {
							failures = append(failures, fmt.Sprintf("%s via %s at %s: %d %v %.200s", inst, at.name, time.Now().Format("15:04:05.000"), code, err, body))
						}
					}
					mu.Unlock()
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	}
	start := time.Now()
	for _, n := range c.nodes {
		// Killed, not stopped: a graceful stop would hand leadership
		// over first; a crash leaves the cluster to elect a leader.
		n.stopEtcd(syscall.SIGKILL)
		time.Sleep(2 * time.Second) // the cluster runs on two members meanwhile
		n.startEtcd(c.nodes, "existing")
		n.waitEtcd(30 * time.Second)
		// Each node's keep-alives have gone through the restart.
		time.Sleep(time.Duration(leaseTTL) * time.Second / 2)
	}
	close(stop)
	wg.Wait()
	t.Logf("etcd members restarted one at a time over %s: %d requests through the 3 nodes, %d failed", time.Since(start).Round(100*time.Millisecond), total, failed)
	if failed > 0 || total < 100 {
		t.Fatalf("while etcd members restarted one at a time: %d of %d requests failed, want 0 (and at least 100 sent):\n%s", failed, total, strings.Join(failures, "\n"))
	}
	for _, inst := range insts {
		if on := c.runsOn(t, inst); strings.Join(on, ",") != strings.Join(before[inst], ",") {
			t.Fatalf("%s ran on %v before etcd's members restarted, on %v after", inst, before[inst], on)
		}
	}
	for _, n := range c.nodes {
		log := n.tenLog.String()
		if strings.Contains(log, "fleet session fenced") {
			t.Fatalf("node %s fenced while etcd members restarted one at a time:\n%s", n.name, log)
		}
		t.Logf("node %s: %d keep-alives failed (and were retried) meanwhile", n.name, strings.Count(log, "fleet keep-alive failed"))
	}
}

// psRow is a row of `ten --json ps`.
type psRow struct {
	Instance string `json:"instance"`
	Node     string `json:"node"`
	State    string `json:"state"`
	Detail   string `json:"detail"`
	Health   string `json:"health"`
	Weight   int    `json:"weight"`
}

// psRowOf returns inst's row in n's `ten --json ps`.
func psRowOf(t *testing.T, n *node, inst string) (psRow, bool) {
	t.Helper()
	var rows []psRow
	out := n.mustCLI("--json", "ps", "--all")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%s: ten --json ps: %v\n%s", n.name, err, out)
	}
	for _, r := range rows {
		if r.Instance == inst {
			return r, true
		}
	}
	return psRow{}, false
}

// waitRow waits until inst's row in n's ps satisfies ok.
func waitRow(t *testing.T, n *node, inst string, within time.Duration, ok func(psRow) bool) psRow {
	t.Helper()
	var r psRow
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var found bool
		if r, found = psRowOf(t, n, inst); found && ok(r) {
			return r
		}
	}
	t.Fatalf("%s: ps row of %s did not become as expected within %s: %+v", n.name, inst, within, r)
	return r
}

// psHas reports whether ps output has a row for inst on node.
func psHas(out, node, inst string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == node && f[1] == inst {
			return true
		}
	}
	return false
}
