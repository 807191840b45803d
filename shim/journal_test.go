package shim

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestJournalStream speaks journald's stream protocol to a listener of our
// own: the header (identifier, empty unit, priority, four flags), then the
// app's lines as written to the returned file.
func TestJournalStream(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stdout")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(bufio.NewReader(c))
		c.Close()
		got <- string(b)
	}()
	f, err := JournalStream(path, "myapp", PriorityErr)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("boom\n")
	f.Close()
	want := "myapp\n\n3\n1\n0\n0\n0\nboom\n"
	if g := <-got; g != want {
		t.Errorf("journald got %q, want %q", g, want)
	}
	if _, err := JournalStream(filepath.Join(t.TempDir(), "none"), "x", PriorityInfo); err == nil || !strings.Contains(err.Error(), "journal stream") {
		t.Errorf("no journald: %v", err)
	}
}
