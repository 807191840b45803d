package l4

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestProxy relays a connection for a listen address to an internal socket
// and reports activity while it is open.
func TestProxy(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "echo %s\n", sc.Text())
				}
			}()
		}
	}()
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := front.Addr().String()
	front.Close()
	ls := mustParse(t, "tcp://"+addr)
	p := NewProxy(nil)
	defer p.Close()
	if err := p.Add("db:a", ls, []string{backend.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	before, _ := p.Activity("db:a")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "hi\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "echo hi\n" {
		t.Fatalf("got %q %v", line, err)
	}
	time.Sleep(20 * time.Millisecond)
	if at, ok := p.Activity("db:a"); !ok || time.Since(at) > time.Second || !at.After(before) {
		t.Errorf("activity while open: %v %v", at, ok)
	}
	c.Close()
	p.Remove("db:a")
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still listening after Remove")
	}
	if _, ok := p.Activity("db:a"); ok {
		t.Error("activity of a removed route")
	}
}

func TestProxyRefusesHugeRange(t *testing.T) {
	p := NewProxy(nil)
	err := p.Add("db:a", mustParse(t, "tcp://127.0.0.1:40000-40999"), []string{"127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "at most 256") {
		t.Errorf("got %v", err)
	}
}
