package system

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenhq/ten/units"
)

// l4Service is a raw TCP echo tenant with one address per instance from a
// prefix and a port range: idle_timeout 2 s, asleep until the first client.
const l4Service = `
[service.tcpecho]
command = "ECHO --mode tcp"
activation = "socket"
idle_timeout = 2
start = "lazy"
listen = ["tcp://127.0.1.0/24:7000-7009"]
`

// l4Address returns the address ten gave the instance (TEN_LISTEN in its
// service's environment, as `systemctl show` prints it) without the ports.
func l4Address(t *testing.T, inst string) string {
	t.Helper()
	unit := "tenement-" + strings.Replace(inst, ":", "@", 1) + ".service"
	env := show(t, unit, "Environment")
	m := regexp.MustCompile(`TEN_LISTEN=tcp://([0-9.]+):`).FindStringSubmatch(env)
	if m == nil {
		t.Fatalf("%s has no TEN_LISTEN: %s", unit, env)
	}
	return m[1]
}

// l4Client is one client connection to an L4 tenant.
type l4Client struct {
	c  net.Conn
	br *bufio.Reader
}

// dialL4 connects, reads the greeting and checks that the app saw this
// client's own address and port as its peer when wantRealPeer is set.
func dialL4(t *testing.T, addr string, wantRealPeer bool) (*l4Client, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	cl := &l4Client{c: c, br: bufio.NewReader(c)}
	greeting, err := cl.br.ReadString('\n')
	if err != nil {
		t.Fatalf("greeting from %s: %v", addr, err)
	}
	if wantRealPeer && !strings.HasSuffix(greeting, " peer "+c.LocalAddr().String()+"\n") {
		t.Errorf("app saw another peer than the client %s: %q", c.LocalAddr(), greeting)
	}
	return cl, greeting
}

func (cl *l4Client) echo(t *testing.T, line string) {
	t.Helper()
	cl.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(cl.c, "%s\n", line)
	got, err := cl.br.ReadString('\n')
	if err != nil || got != "echo: "+line+"\n" {
		t.Fatalf("echo %q: %q %v", line, got, err)
	}
}

// metric returns the value of a ten_* sample on GET /metrics, -1 if absent.
func (s *tenServer) metric(name, inst string) float64 {
	s.t.Helper()
	code, body, err := s.get("127.0.0.1", "/metrics")
	if err != nil || code != 200 {
		s.t.Fatalf("GET /metrics: %d %v", code, err)
	}
	prefix := name + `{instance="` + inst + `"} `
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	return -1
}

// stayAwake fails the test if inst leaves the running state during d.
func (s *tenServer) stayAwake(inst string, d time.Duration, why string) {
	s.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if st := s.psState(inst); st != "running" {
			s.t.Fatalf("%s went %q %s", inst, st, why)
		}
	}
}

// Issue 3, items 1-3: an L4 tenant behind sk_lookup sleeps, wakes on a
// client connection, answers with the client's own address as peer; its
// activity counters move; the reaper puts it to sleep only after silence,
// whether the traffic is an L4 client's or a connection the app opened.
func TestL4Dispatch(t *testing.T) {
	s := startTen(t, l4Service)
	if !strings.Contains(s.log.String(), "name=l4-dispatch on=true") || !strings.Contains(s.log.String(), "name=activity-accounting on=true") {
		t.Fatalf("ten serve does not say BPF features are on:\n%s", s.log.String())
	}
	s.mustTen("spawn", "tcpecho:a")
	s.mustTen("spawn", "tcpecho:b")
	if st := s.psState("tcpecho:a"); st != "sleeping" {
		t.Fatalf("lazy L4 instance is %q", st)
	}
	addrA, addrB := l4Address(t, "tcpecho:a"), l4Address(t, "tcpecho:b")
	if addrA == addrB || !strings.HasPrefix(addrA, "127.0.1.") {
		t.Fatalf("addresses %s and %s", addrA, addrB)
	}
	// No process listens on the address: sk_lookup steers it to the
	// internal socket systemd holds.
	if out, _ := exec.Command("ss", "-Htln", "src", addrA).CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("something listens on %s: %s", addrA, out)
	}

	// Wake on a connection to any port of the range; the app sees the client.
	start := time.Now()
	cl, greeting := dialL4(t, net.JoinHostPort(addrA, "7003"), true)
	t.Logf("cold connect to first byte: %s", time.Since(start))
	if !strings.HasPrefix(greeting, "hello from tcpecho:a ") {
		t.Fatalf("greeting %q", greeting)
	}
	cl.echo(t, "one")
	s.waitState("tcpecho:a", "running", 5*time.Second)
	if st := s.psState("tcpecho:b"); st != "sleeping" {
		t.Errorf("tcpecho:b woke with a: %q", st)
	}
	_, gb := dialL4(t, net.JoinHostPort(addrB, "7009"), true)
	if !strings.HasPrefix(gb, "hello from tcpecho:b ") {
		t.Errorf("b's address answered %q", gb)
	}
	start = time.Now()
	dialL4(t, net.JoinHostPort(addrB, "7000"), true)
	t.Logf("warm connect to first byte: %s", time.Since(start))
	// Stopping an instance frees its address and removes its slice.
	s.mustTen("stop", "tcpecho:b")
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(addrB, "7009"), time.Second); err == nil {
		c.Close()
		t.Errorf("the address of a stopped instance still connects")
	}
	if st := show(t, units.Instance{Service: "tcpecho", ID: "b"}.Slice(), "ActiveState"); st == "active" {
		t.Errorf("slice of a stopped instance is %s", st)
	}

	// The counters move.
	rx := s.metric("ten_instance_rx_bytes_total", "tcpecho:a")
	conns := s.metric("ten_instance_connections_total", "tcpecho:a")
	if rx <= 0 || conns < 1 || s.metric("ten_instance_tx_bytes_total", "tcpecho:a") <= 0 {
		t.Fatalf("metrics of tcpecho:a: rx %v connections %v", rx, conns)
	}
	cl.echo(t, strings.Repeat("x", 4000))
	if rx2 := s.metric("ten_instance_rx_bytes_total", "tcpecho:a"); rx2 < rx+4000 {
		t.Errorf("rx bytes %v then %v after a 4000-byte line", rx, rx2)
	}
	if last := s.metric("ten_instance_last_activity_seconds", "tcpecho:a"); time.Since(time.Unix(int64(last), 0)) > 5*time.Second {
		t.Errorf("last activity %v", last)
	}
	// A client's connection is inbound activity too.
	if last := s.metric("ten_instance_last_inbound_seconds", "tcpecho:a"); time.Since(time.Unix(int64(last), 0)) > 5*time.Second {
		t.Errorf("last inbound activity %v", last)
	}

	// Busy on the L4 path only (no HTTP request): a line every 0.5 s for
	// twice the idle timeout keeps it awake.
	pid := mainPID(t, "tcpecho:a")
	for i := 0; i < 8; i++ {
		cl.echo(t, "busy "+strconv.Itoa(i))
		if st := s.psState("tcpecho:a"); st != "running" {
			t.Fatalf("L4-busy instance went %q", st)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if p := mainPID(t, "tcpecho:a"); p != pid {
		t.Fatalf("app restarted while busy: %d -> %d", pid, p)
	}
	// An open connection keeps it awake even when nothing moves on it (the
	// router and the userspace proxy treat an open connection so too);
	// closed, and silent, it sleeps.
	s.stayAwake("tcpecho:a", 3*time.Second, "with an open silent L4 connection")
	if v := s.metric("ten_instance_open_connections", "tcpecho:a"); v != 1 {
		t.Errorf("ten_instance_open_connections %v with one client", v)
	}
	cl.c.Close()
	s.waitState("tcpecho:a", "sleeping", 10*time.Second)

	// Busy through a connection the app opened itself.
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ticks := make(chan string, 64)
	go func() {
		c, err := sink.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			ticks <- sc.Text()
		}
		close(ticks)
	}()
	// A wake through the router (HTTP on the unix socket), which returns at
	// once; the app then writes 10 ticks 0.5 s apart (twice the timeout).
	s.mustGet("a.tcpecho.localhost", "/dial?addr="+sink.Addr().String()+"&n=10&ms=500")
	pid = mainPID(t, "tcpecho:a")
	s.stayAwake("tcpecho:a", 4*time.Second, "while its own outbound connection was busy")
	n := 0
	for range ticks {
		n++
	}
	if n != 10 {
		t.Errorf("sink got %d ticks", n)
	}
	if p := mainPID(t, "tcpecho:a"); p != pid {
		t.Errorf("app restarted during its outbound traffic: %d -> %d", pid, p)
	}
	s.waitState("tcpecho:a", "sleeping", 10*time.Second)
}

// Issue 3, item 4: L4 dispatch keeps working while ten serve is down (kill
// -9), a new ten serve re-adopts the pinned state, and re-registers an
// instance's socket after its socket unit was restarted.
func TestL4Kill9Serve(t *testing.T) {
	s := startTen(t, `
[service.tcpecho]
command = "ECHO --mode tcp"
activation = "socket"
idle_timeout = 300
start = "lazy"
listen = ["tcp://127.0.2.10:7100"]
`)
	s.mustTen("spawn", "tcpecho:k")
	addr := "127.0.2.10:7100"
	// An address of its own belongs to one instance: a second is refused
	// and nothing is made.
	if out, err := s.ten("spawn", "tcpecho:k2"); err == nil || !strings.Contains(out, "tcpecho:k holds tcp://127.0.2.10:7100") {
		t.Errorf("second holder of one address: %v %s", err, out)
	}
	if st := show(t, "tenement-tcpecho@k2.socket", "LoadState"); st != "not-found" {
		t.Errorf("refused spawn left a socket unit: %s", st)
	}
	cl, _ := dialL4(t, addr, true)
	cl.echo(t, "before")
	s.kill()
	// With ten gone, a new connection still lands in the instance.
	cl2, _ := dialL4(t, addr, true)
	cl2.echo(t, "ten is down")
	cl.echo(t, "old connection")
	s.mustSleep(t, "tcpecho:k")
	// ...and wakes a sleeping instance.
	cl3, _ := dialL4(t, addr, true)
	cl3.echo(t, "woken with ten down")

	s.start()
	if !strings.Contains(s.log.String(), `msg="adopted instances from systemd" instances=1`) {
		t.Errorf("no adoption:\n%s", s.log.String())
	}
	cl4, _ := dialL4(t, addr, true)
	cl4.echo(t, "after restart")

	// A restarted socket unit has a new socket; ten registers it. (A
	// transient socket unit that is stopped is gone; restart keeps it.)
	s.mustSleep(t, "tcpecho:k")
	inode := internalSocketInode(t, "tcpecho:k")
	if out, err := exec.Command("systemctl", "restart", "tenement-tcpecho@k.socket").CombinedOutput(); err != nil {
		t.Fatalf("restart socket: %v %s", err, out)
	}
	if now := internalSocketInode(t, "tcpecho:k"); now == inode {
		t.Fatalf("socket restart kept socket inode %s", now)
	}
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
	}
	if err != nil {
		t.Fatalf("after a socket unit restart: %v\n%s", err, s.log.String())
	}
	cl5, _ := dialL4(t, addr, true)
	cl5.echo(t, "new socket")
	if strings.Contains(s.log.String(), "level=ERROR") {
		t.Errorf("errors:\n%s", s.log.String())
	}
}

// mustSleep stops the instance's service with systemctl (ten may be down).
func (s *tenServer) mustSleep(t *testing.T, inst string) {
	t.Helper()
	unit := "tenement-" + strings.Replace(inst, ":", "@", 1) + ".service"
	if out, err := exec.Command("systemctl", "stop", unit).CombinedOutput(); err != nil {
		t.Fatalf("stop %s: %v %s", unit, err, out)
	}
}

// Issue 3, item 5: with BPF off (TEN_DISABLE_BPF=1, as on a host without
// it) ten says so, serves L4 addresses with its userspace proxy, wakes the
// instance, and the reaper still sees the proxied traffic.
func TestL4FallbackWithoutBPF(t *testing.T) {
	t.Setenv("TEN_DISABLE_BPF", "1")
	s := startTen(t, `
[service.tcpecho]
command = "ECHO --mode tcp"
activation = "socket"
idle_timeout = 2
start = "lazy"
listen = ["tcp://127.0.3.0/24:7200-7201"]
`)
	if !strings.Contains(s.log.String(), "name=l4-dispatch on=false") || !strings.Contains(s.log.String(), "TEN_DISABLE_BPF=1") {
		t.Fatalf("ten serve does not say BPF is off and why:\n%s", s.log.String())
	}
	s.mustTen("spawn", "tcpecho:f")
	addr := net.JoinHostPort(l4Address(t, "tcpecho:f"), "7201")
	cl, greeting := dialL4(t, addr, false)
	if !strings.HasPrefix(greeting, "hello from tcpecho:f ") || !strings.Contains(greeting, " peer 127.0.0.1:") {
		t.Fatalf("greeting through the proxy %q", greeting)
	}
	cl.echo(t, "via proxy")
	s.waitState("tcpecho:f", "running", 5*time.Second)
	if v := s.metric("ten_instance_rx_bytes_total", "tcpecho:f"); v != -1 {
		t.Errorf("BPF metrics without BPF: %v", v)
	}
	// An open proxied connection keeps it awake; after it closes, it sleeps.
	s.stayAwake("tcpecho:f", 4*time.Second, "with an open proxied connection")
	cl.c.Close()
	s.waitState("tcpecho:f", "sleeping", 10*time.Second)
	cl2, _ := dialL4(t, addr, false)
	cl2.echo(t, "woken via proxy")
}

// internalSocketInode returns the inode of the internal TCP socket systemd
// holds for inst (TEN_L4_SOCKETS), as ss prints it.
func internalSocketInode(t *testing.T, inst string) string {
	t.Helper()
	unit := "tenement-" + strings.Replace(inst, ":", "@", 1) + ".service"
	m := regexp.MustCompile(`TEN_L4_SOCKETS=([0-9.:]+)`).FindStringSubmatch(show(t, unit, "Environment"))
	if m == nil {
		t.Fatalf("%s has no TEN_L4_SOCKETS", unit)
	}
	out, err := exec.Command("ss", "-Htlne", "src", m[1]).CombinedOutput()
	ino := regexp.MustCompile(`ino:(\d+)`).FindStringSubmatch(string(out))
	if err != nil || ino == nil {
		t.Fatalf("ss for %s: %v %s", m[1], err, out)
	}
	return ino[1]
}

// l4Info sends GET /info over a raw TCP connection to addr and returns the
// app's answer and the client's own address.
func l4Info(t *testing.T, addr string) (body, client string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /info HTTP/1.0\r\nHost: l4\r\n\r\n")
	b, _ := io.ReadAll(c)
	if !strings.Contains(string(b), "200 OK") {
		t.Fatalf("GET /info over %s: %q", addr, b)
	}
	return string(b), c.LocalAddr().String()
}

// An app that binds PORT itself (activation = "shim", the default) is
// reachable on its L4 address, and once it listens its L4 clients reach it
// with no relay between: the app sees each client's own address and port.
// The connection that wakes it is answered (the shim relays it: it was in
// the systemd-held socket's backlog), and so across sleep and wake.
func TestL4PortAppSeesClient(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO --mode port"
idle_timeout = 2
start = "lazy"
listen = ["tcp://127.0.4.1:7400"]
`)
	s.mustTen("spawn", "web:p")
	const addr = "127.0.4.1:7400"
	for cycle := 0; cycle < 2; cycle++ {
		s.waitState("web:p", "sleeping", 15*time.Second)
		// The waking connection: answered, by the app.
		if body, _ := l4Info(t, addr); !strings.Contains(body, `"instance":"web:p"`) {
			t.Fatalf("cycle %d: waking connection: %q", cycle, body)
		}
		// ten steers new connections to the app's own socket once the
		// service is active; until then the shim relays them.
		direct := 0
		deadline := time.Now().Add(5 * time.Second)
		for direct < 5 {
			body, client := l4Info(t, addr)
			if strings.Contains(body, `"remote":"`+client+`"`) {
				direct++
			} else if direct > 0 {
				t.Fatalf("cycle %d: after %d connections that reached the app directly, one went through a relay: client %s, app saw %q", cycle, direct, client, body)
			} else if time.Now().After(deadline) {
				j, _ := exec.Command("journalctl", "-u", "tenement.service", "--no-pager", "-n", "30").CombinedOutput()
				t.Fatalf("cycle %d: the app still sees a relay, not the client %s: %q\n%s", cycle, client, body, j)
			}
		}
		// The router path beside it.
		if body := s.mustGet("p.web.localhost", "/"); !strings.Contains(body, "hello from web:p") {
			t.Errorf("cycle %d: router: %q", cycle, body)
		}
		// The relay that served the waking connection has handed off and
		// exited: the app is the service's only process, as for an app
		// without L4 addresses.
		onlyApp(t, "web:p", 10*time.Second)
	}

	// Woken while ten is down: the shim answers every connection (nobody
	// steers them to the app yet); a new ten adopts the instance and
	// steers them to the app again.
	s.kill()
	s.mustSleep(t, "web:p")
	for i := 0; i < 3; i++ {
		body, client := l4Info(t, addr)
		if !strings.Contains(body, `"instance":"web:p"`) {
			t.Fatalf("ten down, connection %d: %q", i, body)
		}
		if strings.Contains(body, `"remote":"`+client+`"`) {
			t.Fatalf("ten down, connection %d reached the app directly: the sleep kept the old socket registered? %q", i, body)
		}
	}
	s.start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		body, client := l4Info(t, addr)
		if strings.Contains(body, `"remote":"`+client+`"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after ten restarted, the app still sees a relay, not the client %s: %q\n%s", client, body, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The adopted instance is routed to its app's own PORT too.
	if body := s.mustGet("p.web.localhost", "/"); !strings.Contains(body, "hello from web:p") {
		t.Errorf("router after ten restarted: %q", body)
	}
}

// onlyApp waits until inst's service holds one process, its main one (the
// app), and fails the test if it does not within d.
func onlyApp(t *testing.T, inst string, d time.Duration) {
	t.Helper()
	unit := "tenement-" + strings.Replace(inst, ":", "@", 1) + ".service"
	deadline := time.Now().Add(d)
	for {
		procs, err := os.ReadFile(cgroupV2 + show(t, unit, "ControlGroup") + "/cgroup.procs")
		if err != nil {
			t.Fatal(err)
		}
		pids := strings.Fields(string(procs))
		if len(pids) == 1 && pids[0] == strconv.Itoa(mainPID(t, inst)) {
			return
		}
		if time.Now().After(deadline) {
			var cmds []string
			for _, p := range pids {
				b, _ := os.ReadFile("/proc/" + p + "/cmdline")
				cmds = append(cmds, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
			}
			t.Fatalf("%s: processes %q in the service after %s, want only the app (MainPID %d)", inst, cmds, d, mainPID(t, inst))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A connection that wakes an L4 service whose app binds PORT is relayed
// (it was in the systemd socket's backlog), and the relay hands off to the
// app's own socket without cutting it: a connection held open across the
// hand-off keeps working, later connections reach the app directly, and the
// relay exits once its last connection closes.
func TestL4RelayHandOff(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO --mode port"
idle_timeout = 300
start = "lazy"
listen = ["tcp://127.0.4.1:7500"]
`)
	s.mustTen("spawn", "web:h")
	s.waitState("web:h", "sleeping", 15*time.Second)
	const addr = "127.0.4.1:7500"
	held, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(held)
	get := func(i int) {
		t.Helper()
		fmt.Fprintf(held, "GET /info HTTP/1.1\r\nHost: l4\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("held connection, request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"instance":"web:h"`) {
			t.Fatalf("held connection, request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	get(0) // wakes the service
	// Later connections reach the app itself once ten steers them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		body, client := l4Info(t, addr)
		if strings.Contains(body, `"remote":"`+client+`"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connections still go through a relay: %q", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // past the relay's hand-off
	for i := 1; i <= 3; i++ {
		get(i) // the relay keeps serving the connection it took
	}
	held.Close()
	onlyApp(t, "web:h", 10*time.Second)
	if body, client := l4Info(t, addr); !strings.Contains(body, `"remote":"`+client+`"`) {
		t.Errorf("after the hand-off: %q", body)
	}
}

// An app that binds PORT itself (activation = "shim", the default) is
// reachable on its L4 address too, with the router path beside it.
func TestL4ShimApp(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO --mode port"
idle_timeout = 300
start = "lazy"
listen = ["tcp://127.0.4.1:7300"]
`)
	s.mustTen("spawn", "web:s")
	c, err := net.DialTimeout("tcp", "127.0.4.1:7300", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /info HTTP/1.0\r\nHost: l4\r\n\r\n")
	b, _ := io.ReadAll(c)
	if !strings.Contains(string(b), "200 OK") || !strings.Contains(string(b), `"instance":"web:s"`) || !strings.Contains(string(b), `"remote":"127.0.0.1:`) {
		t.Errorf("HTTP over the L4 address of a shim-mode app: %q", b)
	}
	// The router path still works beside it.
	if body := s.mustGet("s.web.localhost", "/"); !strings.Contains(body, "hello from web:s") {
		t.Errorf("router: %q", body)
	}
}

// An L4 service whose app binds PORT, started by spawn (not lazy): its L4
// clients reach the app's own socket once it listens, as after a wake. The
// service turns active while spawn still runs, before ten has registered
// the instance; the steering must not be lost to that.
func TestL4PortAppSpawnedRunning(t *testing.T) {
	s := startTen(t, `
[service.web]
command = "ECHO --mode port"
listen = ["tcp://127.0.4.2:7410"]
`)
	s.mustTen("spawn", "web:q")
	const addr = "127.0.4.2:7410"
	deadline := time.Now().Add(10 * time.Second)
	for {
		body, client := l4Info(t, addr)
		if !strings.Contains(body, `"instance":"web:q"`) {
			t.Fatalf("connection: %q", body)
		}
		if strings.Contains(body, `"remote":"`+client+`"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after spawn the app still sees a relay, not the client %s: %q\n%s", client, body, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	onlyApp(t, "web:q", 10*time.Second)
}
