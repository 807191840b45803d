package upstream

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// A directly run app that does not listen is woken by one connection to
// the systemd socket, and the dial returns a connection to the app once it
// listens; while it listens no wake connection is made.
func TestAppDialerWakesThenDialsApp(t *testing.T) {
	dir := t.TempDir()
	wakePath, appPath := filepath.Join(dir, "wake.sock"), filepath.Join(dir, "app.sock")
	wake, err := net.Listen("unix", wakePath)
	if err != nil {
		t.Fatal(err)
	}
	defer wake.Close()
	wakes := make(chan struct{}, 8)
	go func() {
		for {
			c, err := wake.Accept()
			if err != nil {
				return
			}
			c.Close()
			wakes <- struct{}{}
		}
	}()
	// The "service": starts listening on the app socket 50 ms after a wake.
	appUp := make(chan net.Listener, 1)
	go func() {
		<-wakes
		time.Sleep(50 * time.Millisecond)
		l, err := net.Listen("unix", appPath)
		if err != nil {
			t.Error(err)
			return
		}
		appUp <- l
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("app"))
			c.Close()
		}
	}()
	d := NewAppDialer(wakePath, appPath, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "x")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := c.Read(buf); err != nil || string(buf) != "app" {
		t.Fatalf("read %q %v, want the app's answer", buf, err)
	}
	c.Close()
	l := <-appUp
	defer l.Close()
	// Awake: straight to the app, no second wake.
	c, err = d.DialContext(ctx, "tcp", "x")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-wakes:
		t.Fatal("a dial to a listening app connected to the wake socket")
	case <-time.After(50 * time.Millisecond):
	}
}

// An app that never listens: the dial ends with its context (the router's
// startup_timeout), and a missing wake socket is an error at once.
func TestAppDialerNeverListens(t *testing.T) {
	dir := t.TempDir()
	wakePath := filepath.Join(dir, "wake.sock")
	wake, err := net.Listen("unix", wakePath)
	if err != nil {
		t.Fatal(err)
	}
	defer wake.Close()
	d := NewAppDialer(wakePath, filepath.Join(dir, "app.sock"), 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := d.DialContext(ctx, "tcp", "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
	d = NewAppDialer(filepath.Join(dir, "gone.sock"), filepath.Join(dir, "app.sock"), 0, nil)
	if _, err := d.DialContext(context.Background(), "tcp", "x"); err == nil {
		t.Fatal("dial with no wake socket succeeded")
	}
}

// Requests and the readiness watch waiting for one app share one poll: all
// get the app once it listens, including a waiter whose poller gave up
// first (its own deadline) while the app was still starting.
func TestAppDialerSharedPoll(t *testing.T) {
	dir := t.TempDir()
	wakePath, appPath := filepath.Join(dir, "wake.sock"), filepath.Join(dir, "app.sock")
	wake, err := net.Listen("unix", wakePath)
	if err != nil {
		t.Fatal(err)
	}
	defer wake.Close()
	d := NewAppDialer(wakePath, appPath, 0, nil)
	// A poller that gives up early leads first.
	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	errs := make(chan error, 8)
	go func() { _, err := d.DialContext(short, "tcp", "x"); errs <- err }()
	time.Sleep(5 * time.Millisecond)
	ctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	for i := 0; i < 4; i++ {
		go func() {
			c, err := d.DialContext(ctx, "tcp", "x")
			if err == nil {
				c.Close()
			}
			errs <- err
		}()
	}
	go func() { errs <- d.WaitListening(ctx, false) }()
	time.Sleep(100 * time.Millisecond) // past the first poller's deadline
	l, err := net.Listen("unix", appPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := <-errs; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the short poller: %v, want its deadline", err)
	}
	for i := 0; i < 5; i++ {
		if err := <-errs; err != nil {
			t.Errorf("waiter %d: %v", i, err)
		}
	}
}

// Locate says 127.0.0.1:PORT only when the app answers there, not when it
// answers on its socket; it does not wake the app (no connection to the
// wake socket).
func TestAppDialerLocate(t *testing.T) {
	dir := t.TempDir()
	wake := filepath.Join(dir, "wake.sock")
	wl, err := net.Listen("unix", wake)
	if err != nil {
		t.Fatal(err)
	}
	defer wl.Close()
	woken := make(chan struct{}, 1)
	go func() {
		if c, err := wl.Accept(); err == nil {
			c.Close()
			woken <- struct{}{}
		}
	}()

	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := tl.Addr().(*net.TCPAddr).Port
	d := NewAppDialer(wake, filepath.Join(dir, "app.sock"), port, nil)
	if got, want := d.Locate(context.Background()), tl.Addr().String(); got != want {
		t.Errorf("app on PORT: Locate = %q, want %q", got, want)
	}
	tl.Close()

	sock := filepath.Join(dir, "app2.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	d = NewAppDialer(wake, sock, port, nil)
	if got := d.Locate(context.Background()); got != "" {
		t.Errorf("app on its socket: Locate = %q, want none", got)
	}
	select {
	case <-woken:
		t.Error("Locate woke the app")
	default:
	}
}
