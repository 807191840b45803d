package shim

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// relayChildEnv makes the test binary act as a relay child that reports
// its HandOffSignal disposition on fd 3 (see TestStartRelaySignal).
const relayChildEnv = "TEN_SHIM_TEST_RELAY_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(relayChildEnv) == "1" {
		relayChild()
		return
	}
	os.Exit(m.Run())
}

// relayChild reports whether it catches and ignores HandOffSignal at start
// and after it listens for it as Relay does, and whether the signal then
// reaches it.
func relayChild() {
	out := os.NewFile(3, "report")
	cgt0, ign0 := disposition("self", HandOffSignal)
	c := make(chan os.Signal, 1)
	signal.Notify(c, HandOffSignal)
	cgt1, ign1 := disposition("self", HandOffSignal)
	syscall.Kill(os.Getpid(), HandOffSignal)
	got := false
	select {
	case <-c:
		got = true
	case <-time.After(5 * time.Second):
	}
	fmt.Fprintf(out, "start cgt=%v ign=%v; listening cgt=%v ign=%v; received=%v\n", cgt0, ign0, cgt1, ign1, got)
	out.Close()
}

// disposition reads whether pid (or "self") catches and ignores sig.
func disposition(pid string, sig syscall.Signal) (caught, ignored bool) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return false, false
	}
	bit := uint64(1) << (uint(sig) - 1)
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			continue
		}
		switch k {
		case "SigCgt":
			caught = mask&bit != 0
		case "SigIgn":
			ignored = mask&bit != 0
		}
	}
	return caught, ignored
}

// A relay started by Launch has no handler for HandOffSignal until it
// listens for it (so ten, which reads SigCgt before it signals, never sends
// it to a relay that would drop it), receives it once it listens, and the
// app Launch execs next starts with the signal's default action.
func TestStartRelaySignal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(relayChildEnv, "1")
	if err := startRelay([]string{os.Args[0]}, []*os.File{w}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	r.Close()
	if err != nil {
		t.Fatalf("relay child's report: %v (%q)", err, line)
	}
	line = strings.TrimSpace(line)
	t.Logf("relay child: %s", line)
	if want := "start cgt=false ign=true; listening cgt=true ign=false; received=true"; line != want {
		t.Errorf("relay child: %q, want %q", line, want)
	}
	// What Launch execs after startRelay: the default action.
	out, err := exec.Command("sh", "-c", "grep -E '^Sig(Cgt|Ign):' /proc/$$/status").Output()
	if err != nil {
		t.Fatal(err)
	}
	bit := uint64(1) << (uint(HandOffSignal) - 1)
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, ":")
		mask, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if k == "SigIgn" && mask&bit != 0 {
			t.Errorf("a program started after startRelay ignores %v: the app would never see it", HandOffSignal)
		}
	}
}
