package system

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestH2CStreamsCountPerAddress: an HTTP/2 stream holds a connection to its
// instance as an HTTP/1.1 client connection does, so it counts against
// max_conns_per_address too. Before, one h2c connection carried 250
// requests at once (Go's default), so one address could hold 250 times its
// cap of instance connections: 8 h2c connections put 885 descriptors in
// ten, and 512 of them would pass its limit of 20,000.
func TestH2CStreamsCountPerAddress(t *testing.T) {
	s := startTen(t, `max_conns_per_address = 8

[service.api]
command = "ECHO --mode activation"
activation = "socket"
start = "eager"

[instances]
api = ["a"]
`)
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p, MaxConnsPerHost: 1, DialContext: func(context.Context, string, string) (net.Conn, error) {
		return dialFrom(s.addr, "127.0.0.6")
	}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", "http://"+s.addr+"/stream?n=1&ms=2000", nil)
			req.Host = "a.api.localhost"
			resp, err := cl.Do(req)
			code := -1
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
				if resp.ProtoMajor != 2 {
					t.Errorf("answered over HTTP/%d, want h2c", resp.ProtoMajor)
				}
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("20 streams on one h2c connection, max_conns_per_address = 8: %v", codes)
	if codes[200] == 0 || codes[200] > 7 || codes[200]+codes[429] != 20 {
		t.Errorf("codes %v: want 1..7 streams answered (the connection holds one place) and the rest 429", codes)
	}
}
