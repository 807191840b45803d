// Package shimbuild builds ten-shim the way make build and make deb do, for
// the test harnesses that build their own binaries (the system tests and
// the benchmarks), so that they run and measure the shim users get.
//
// ten-shim runs in front of every directly run app at every wake (`ten-shim
// cat`), so the cost of exec'ing it is part of every cold wake. It is built
// with cgo, for the C fast path of `ten-shim cat` (cmd/ten-shim/cat_linux.c),
// and linked statically without PIE: there is then no dynamic loader to run
// and no relocation to apply at exec. A static PIE Go binary has some 15,000
// relocations, which its start-up applies by writing to the pages that hold
// them; on a 2-core VM that made each wake 1–2 ms slower than this build
// (BENCHMARKS.md, "ten-shim's own exec"). Where the static link fails (no
// static libc), Build falls back to an ordinary cgo build and says so.
package shimbuild

import (
	"fmt"
	"io"
	"os"
	"os/exec"
)

// Package is ten-shim's import path relative to the module root.
const Package = "./cmd/ten-shim"

// StaticArgs are the go build flags of the static, non-PIE cgo build
// (make build and make deb use the same).
var StaticArgs = []string{"-tags", "netgo,osusergo", "-ldflags", "-linkmode=external -extldflags=-static"}

// Build builds ten-shim from the module at root into out, statically
// linked with cgo, else (no static libc) as a plain cgo build, reporting
// the fallback and the static link's error on log.
func Build(root, out string, log io.Writer) error {
	args := append([]string{"build"}, StaticArgs...)
	static := exec.Command("go", append(args, "-o", out, Package)...)
	static.Dir = root
	static.Env = append(os.Environ(), "CGO_ENABLED=1")
	msg, err := static.CombinedOutput()
	if err == nil {
		return nil
	}
	fmt.Fprintf(log, "ten-shim: the static build failed (%v: %s); building it with the dynamic loader (each wake pays for it)\n", err, msg)
	plain := exec.Command("go", "build", "-o", out, Package)
	plain.Dir, plain.Stdout, plain.Stderr = root, log, log
	plain.Env = append(os.Environ(), "CGO_ENABLED=1")
	if err := plain.Run(); err != nil {
		return fmt.Errorf("build ten-shim: %w", err)
	}
	return nil
}
