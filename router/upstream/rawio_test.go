package upstream

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// connPair returns both ends of a connection over a listener of network
// at addr.
func connPair(t *testing.T, network, addr string) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		got <- c
	}()
	a, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-got
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) { return connPair(t, "tcp", "127.0.0.1:0") }

// unixPair returns both ends of a unix stream connection.
func unixPair(t *testing.T) (a, b net.Conn) {
	return connPair(t, "unix", filepath.Join(t.TempDir(), "s"))
}

func TestRawIOExchange(t *testing.T) {
	for name, pair := range map[string]func(*testing.T) (net.Conn, net.Conn){
		"tcp": tcpPair, "unix": unixPair,
		"pipe": func(*testing.T) (net.Conn, net.Conn) { return net.Pipe() },
	} {
		t.Run(name, func(t *testing.T) {
			a, b := pair(t)
			r := NewRawIO(a)
			if name != "pipe" && rawSyscalls && r.rc == nil {
				t.Fatal("a socket should be read through its descriptor")
			}
			if name == "pipe" && r.rc != nil {
				t.Fatal("net.Pipe has no descriptor")
			}
			// Several MiB: more than the socket buffers hold, so the write
			// must wait for the reader (EAGAIN, then the poller) and go on.
			want := bytes.Repeat([]byte("0123456789abcdef"), 4<<16)
			read := make(chan []byte, 1)
			go func() {
				got, _ := io.ReadAll(io.LimitReader(b, int64(len(want))))
				read <- got
			}()
			n, err := r.Write(want)
			if err != nil || n != len(want) {
				t.Fatalf("Write: %d, %v; want %d, nil", n, err, len(want))
			}
			if got := <-read; !bytes.Equal(got, want) {
				t.Fatalf("peer read %d bytes, not what was written", len(got))
			}

			// The other way, then the peer's close reads as io.EOF.
			go func() {
				b.Write([]byte("hello"))
				b.Close()
			}()
			var got []byte
			buf := make([]byte, 3)
			for {
				n, err := r.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
			}
			if string(got) != "hello" {
				t.Fatalf("read %q, want hello", got)
			}
			if n, err := r.Read(nil); n != 0 || (err != nil && err != io.EOF) {
				t.Fatalf("empty Read: %d, %v", n, err)
			}
		})
	}
}

func TestRawIODeadlineAndClose(t *testing.T) {
	a, b := tcpPair(t)
	r := NewRawIO(a)
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 16)
	n, err := r.Read(buf)
	var ne net.Error
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline: %d, %v; want a timeout", n, err)
	}
	// A later deadline lets the read wait for data again.
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	go b.Write([]byte("x"))
	if n, err := r.Read(buf); n != 1 || err != nil || buf[0] != 'x' {
		t.Fatalf("Read after the deadline moved: %d, %v", n, err)
	}

	// Write deadline: the peer never reads, the buffers fill, the write
	// times out having written some. The deadline leaves room for the
	// write to begin on a loaded machine under the race detector: one
	// already past when Write starts writes nothing (a CI run saw that
	// at 50 ms).
	a.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	n, err = r.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= 64<<20 {
		t.Fatalf("Write to a stalled peer: %d, %v; want some bytes and a timeout", n, err)
	}

	// Closing the connection from elsewhere ends a waiting read.
	a.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed conn: %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting Read")
	}
	if _, err := r.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed conn: %v; want net.ErrClosed", err)
	}
}

func TestRawIOResetIsSyscallError(t *testing.T) {
	a, b := tcpPair(t)
	// An abortive close: the peer's RST fails our writes.
	b.(*net.TCPConn).SetLinger(0)
	b.Close()
	r := NewRawIO(a)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = r.Write([]byte("after the reset"))
		time.Sleep(time.Millisecond)
	}
	var se *os.SyscallError
	if !errors.As(err, &se) || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		t.Fatalf("Write after RST: %v; want an *os.SyscallError of ECONNRESET or EPIPE", err)
	}
}

func TestRawIONoAllocs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the raw path is Linux's")
	}
	a, b := unixPair(t)
	r := NewRawIO(a)
	msg := []byte("ping")
	buf := make([]byte, 16)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := r.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
	})
	// b's own reads and writes allocate nothing either.
	if allocs != 0 {
		t.Fatalf("%.1f allocations per exchange, want 0", allocs)
	}
}
