package system

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A second ten serve on the same pinned BPF state says which process holds
// it and exits non-zero, changing nothing; the first one goes on serving.
func TestSecondServeOnSamePinsExits(t *testing.T) {
	s := startTen(t, "")
	if !strings.Contains(s.log.String(), "name=l4-dispatch on=true") {
		if os.Getenv("TEN_REQUIRE_SYSTEM") == "1" {
			t.Fatalf("BPF is off in this box, so nothing pins state:\n%s", s.log.String())
		}
		t.Skip("BPF is off in this box")
	}
	_, cfg, _ := writeConfig(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tenBin, "serve", "--config", cfg).CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("second ten serve: err %v (ctx %v), want a non-zero exit at once\n%s", err, ctx.Err(), out)
	}
	want := fmt.Sprintf("in use by process %d", s.cmd.Process.Pid)
	if !strings.Contains(string(out), want) {
		t.Fatalf("second ten serve said:\n%s\nwant it to name the holder: %q", out, want)
	}
	if code, _, err := s.get("", "/health"); err != nil || code != 200 {
		t.Fatalf("first ten serve after the second tried: %d %v", code, err)
	}
}
