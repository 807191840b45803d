package fastpath

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// BenchmarkFastPath: keep-alive GETs through the fast path in one process
// (clients, router and a net/http app on a unix socket), for profiling the
// router's own cost per request and its allocations:
//
//	go test -run '^$' -bench FastPath -benchmem -cpuprofile cpu.out ./router/fastpath/
//
// The numbers include the clients and the app; test/bench's warm proxy is
// the measurement against nginx.
func BenchmarkFastPath(b *testing.B) {
	for _, hosts := range []int{1, 200} {
		for _, conns := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("hosts=%d/conns=%d", hosts, conns), func(b *testing.B) {
				benchFastPath(b, hosts, conns)
			})
		}
	}
}

func benchFastPath(b *testing.B, hosts, conns int) {
	r, _ := newTestRouter(b)
	var names []string
	for i := 0; i < hosts; i++ {
		id := fmt.Sprintf("i%d", i)
		sock := benchApp(b)
		r.Put(router.Backend{Instance: units.Instance{Service: "web", ID: id}, Socket: sock, Weight: 100, StartupTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second}, true)
		names = append(names, id+".web.example.test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cs := &ConnServer{Router: r, Limits: testLimits}
	go cs.Serve(ln)
	defer ln.Close()
	reqs := make([][]byte, len(names))
	for i, n := range names {
		reqs[i] = []byte("GET / HTTP/1.1\r\nHost: " + n + "\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/conns + 1
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Error(err)
				return
			}
			defer nc.Close()
			br := bufio.NewReader(nc)
			for i := 0; i < per; i++ {
				if _, err := nc.Write(reqs[(c+i)%len(reqs)]); err != nil {
					b.Error(err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}(c)
	}
	wg.Wait()
}

// benchApp is a small app on a unix socket answering a fixed body.
func benchApp(b *testing.B) string {
	sock := fmt.Sprintf("%s/app.sock", b.TempDir())
	l, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello from bench\n")
	})}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return sock
}
