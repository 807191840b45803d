package l4

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestProxy relays a connection for a listen address to an internal socket
// and reports activity while it is open.
func TestProxy(t *testing.T) {
	backend := echoBackend(t)
	addr := freeAddr(t)
	ls := mustParse(t, "tcp://"+addr)
	p := NewProxy(nil, 0)
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
	p := NewProxy(nil, 0)
	err := p.Add("db:a", mustParse(t, "tcp://127.0.0.1:40000-40999"), []string{"127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "at most 256") {
		t.Errorf("got %v", err)
	}
}

// echoBackend answers each line with "echo LINE" and says "bye" when its
// client half-closes.
func echoBackend(t *testing.T) net.Listener {
	t.Helper()
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
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
				fmt.Fprintf(c, "bye\n")
			}()
		}
	}()
	return backend
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// One client address holds at most the proxy's cap of connections: the
// next is closed at once, another address is relayed, a closed connection
// gives its place back, and an admitted connection still relays a
// half-close (the client's FIN reaches the app, the app's answer after it
// comes back).
func TestProxyCapsPerAddress(t *testing.T) {
	backend := echoBackend(t)
	addr := freeAddr(t)
	p := NewProxy(nil, 2)
	defer p.Close()
	if err := p.Add("db:a", mustParse(t, "tcp://"+addr), []string{backend.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	echo := func(c net.Conn, br *bufio.Reader, msg string) error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "%s\n", msg)
		line, err := br.ReadString('\n')
		if err == nil && line != "echo "+msg+"\n" {
			err = fmt.Errorf("got %q", line)
		}
		return err
	}
	var held []net.Conn
	var readers []*bufio.Reader
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if err := echo(c, br, fmt.Sprint("held", i)); err != nil {
			t.Fatalf("held connection %d: %v", i, err)
		}
		held, readers = append(held, c), append(readers, br)
	}
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if err := echo(over, bufio.NewReader(over), "over"); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("3rd connection from one address: %v, want it closed at once", err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	other, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := echo(other, bufio.NewReader(other), "other"); err != nil {
		t.Errorf("another address: %v", err)
	}

	// Half-close through the proxy.
	held[0].(*net.TCPConn).CloseWrite()
	if line, err := readers[0].ReadString('\n'); err != nil || line != "bye\n" {
		t.Errorf("after a half-close: %q %v, want the app's answer to it", line, err)
	}
	held[0].Close()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		err = echo(c, bufio.NewReader(c), "again")
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("a place given back was not reused: %v", err)
		}
	}
}
