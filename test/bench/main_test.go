// Package bench holds ten's benchmarks against a real systemd (issue 6):
// cold wake, warm proxy, the L4 path, density, restart under load and
// hibernate churn. They are Go benchmarks so that `go test` without -bench
// skips them; each ignores b.N, takes a fixed number of samples, measures
// ten side by side with a baseline in the same run (interleaved, so noise
// hits both) and adds rows to one table that TestMain prints and writes to
// bench-results.md in the module root once all have run.
//
//	make bench                                    # installs wrk, nginx, python3 if missing
//	go test -run '^$' -bench . -benchtime 1x ./test/bench/
//	go test -run '^$' -bench ColdWake -benchtime 1x ./test/bench/
//
// Nothing here asserts on speed. A benchmark fails only when what it
// measures did not work (an instance never answered); failed requests under
// load are counted and reported, not failed on.
package bench

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tenhq/ten/internal/box"
	"github.com/tenhq/ten/internal/shimbuild"
	"github.com/tenhq/ten/internal/systemtest"
)

// ResultsFile is where TestMain writes the table, in the module root.
const ResultsFile = "bench-results.md"

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		// go test without -bench (make test): nothing here runs, so boot no
		// systemd and build nothing.
		os.Exit(m.Run())
	}
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Getenv(box.EnvInside) == "" {
		// ten-shim as make build and the package build it (static, cgo).
		if err := shimbuild.Build(root, filepath.Join(root, "bin", "ten-shim"), os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for _, b := range [][2]string{{"ten", "./cmd/ten"}, {"echoapp", "./test/apps/echoapp"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(root, "bin", b[0]), b[1])
			cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n", b[0], err)
				os.Exit(1)
			}
		}
	}
	if !systemtest.Available() {
		// Boots a private systemd and runs this binary again inside it,
		// where the branch below prints the table.
		systemtest.Main(m)
		return
	}
	code := m.Run()
	if code != 0 {
		addNote("a benchmark failed (see the output above): the table is incomplete")
	}
	if len(rows) > 0 {
		t := table()
		fmt.Printf("\n%s\n", t)
		out := filepath.Join(root, ResultsFile)
		if err := os.WriteFile(out, []byte(t), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "write %s: %v\n", out, err)
		} else {
			fmt.Printf("(written to %s)\n", out)
		}
	}
	os.Exit(code)
}
