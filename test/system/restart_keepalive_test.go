package system

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Restarting the installed ten fails no request of clients that keep their
// connections open either. The requests are POSTs, which Go's client does
// not replay on a connection closed under it, so a request lost to the close
// of an idle keep-alive connection shows as an error here (as it does in
// wrk, or in any client that does not retry).
func TestInstallRestartKeepAliveDropsNothing(t *testing.T) {
	install(t)
	_, cfg, _ := writeConfig(t, `
[service.web]
command = "ECHO --mode activation"
activation = "socket"
isolation = "process"

[instances]
web = ["a"]
`)
	port := freePort(t)
	bin := filepath.Join(binDir, "ten-installed")
	out, err := exec.Command(tenBin, "install", "--runtime", "-d", "localhost", "-p", fmt.Sprint(port), "--address", "127.0.0.1", "--binary", bin, "-c", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("ten install: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		exec.Command(tenBin, "uninstall", "--runtime").Run()
		removeAllUnits(t)
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	post := func(c *http.Client) error {
		req, _ := http.NewRequest("POST", url, strings.NewReader("x"))
		req.Host = "a.web.localhost"
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	warm := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for post(warm) != nil {
		if time.Now().After(deadline) {
			t.Fatal("installed ten does not route")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One keep-alive connection per worker, as a browser or a
			// service client holds it.
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := post(c); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 3; i++ { // 4 starts in 10 s: systemd's default start limit is 5
		time.Sleep(400 * time.Millisecond)
		if out, err := exec.Command("systemctl", "restart", "tenement.service").CombinedOutput(); err != nil {
			t.Fatalf("restart: %v %s", err, out)
		}
	}
	time.Sleep(400 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("3 restarts under keep-alive load: %d requests answered, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed across restarts; first: %v", failed.Load(), firstErr.Load())
	}
	// Enough requests that the load spanned the restarts; how many is no
	// measure of speed (a -race build on a loaded machine answered 87).
	if ok.Load() < 30 {
		t.Errorf("only %d requests made it", ok.Load())
	}
}
