package dispatch

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tenhq/ten/bpf/internal/bpftest"
)

// BenchmarkL4 compares three ways for a client to reach a TCP app in one
// network namespace, so that the ratios can be read off one run:
//
//	direct     connect to the app's own address
//	sk_lookup  connect to a dispatched address (127.0.1.5:7000), the
//	           kernel hands the connection to the app's listener
//	proxy      connect to a userspace proxy that splices to the app
//	           (io.Copy both ways, as ten's fallback without BPF does)
//
// for three workloads: rtt (64-byte echo on an open connection), connect
// (a new connection per 64-byte echo) and throughput (1 MiB echoed).
//
//	go test -run '^$' -bench L4 ./bpf/dispatch/
func BenchmarkL4(b *testing.B) {
	ns := bpftest.NewNetNS(b)
	ns.Enter(b)

	app := bpftest.ListenTCP(b, "127.0.0.1:0")
	bpftest.EchoServer(b, app)

	d := newDispatcher(b, ns, "")
	b.Cleanup(func() { d.Close() })
	mustAdd(b, d, Binding{Label: "app", Protocol: "tcp", Prefix: netip.MustParsePrefix("127.0.1.0/24"), Port: 7000})
	mustRegister(b, d, "app", app)

	proxy := bpftest.ListenTCP(b, "127.0.0.1:0")
	b.Cleanup(func() { proxy.Close() })
	go proxyLoop(b, ns, proxy, app.Addr().String())

	targets := []struct{ name, addr string }{
		{"direct", app.Addr().String()},
		{"sk_lookup", "127.0.1.5:7000"},
		{"proxy", proxy.Addr().String()},
	}
	workloads := []struct {
		name string
		run  func(b *testing.B, addr string)
	}{
		{"rtt", benchRTT},
		{"connect", benchConnect},
		{"throughput", benchThroughput},
	}
	for _, w := range workloads {
		for _, t := range targets {
			b.Run(w.name+"/"+t.name, func(b *testing.B) {
				ns.Enter(b) // each sub-benchmark runs on a goroutine of its own
				w.run(b, t.addr)
			})
		}
	}
}

func dialBench(b *testing.B, addr string) *net.TCPConn {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	tc := c.(*net.TCPConn)
	tc.SetLinger(0) // no TIME_WAIT: the connect workload would run out of ports
	return tc
}

func benchRTT(b *testing.B, addr string) {
	c := dialBench(b, addr)
	defer c.Close()
	out, in := make([]byte, 64), make([]byte, 64)
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(out); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			b.Fatal(err)
		}
	}
}

func benchConnect(b *testing.B, addr string) {
	out, in := make([]byte, 64), make([]byte, 64)
	for b.Loop() {
		c := dialBench(b, addr)
		if _, err := c.Write(out); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func benchThroughput(b *testing.B, addr string) {
	c := dialBench(b, addr)
	defer c.Close()
	const size = 1 << 20
	out, in := make([]byte, size), make([]byte, size)
	b.SetBytes(size)
	for b.Loop() {
		if err := bpftest.RoundTrip(c, out, in); err != nil {
			b.Fatal(err)
		}
	}
}

// proxyLoop is a plain userspace L4 proxy: a goroutine pair per connection
// copying both ways (io.Copy between TCP sockets uses splice on Linux). It
// dials upstream in the accept loop, whose thread is in the namespace.
func proxyLoop(b *testing.B, ns *bpftest.NetNS, ln net.Listener, upstream string) {
	ns.Enter(b)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", upstream)
		if err != nil {
			c.Close()
			continue
		}
		u.(*net.TCPConn).SetLinger(0)
		go func() {
			defer c.Close()
			defer u.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(u, c)
				u.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, u)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}
