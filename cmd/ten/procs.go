package main

import (
	"log/slog"
	"os"
	"runtime"
	"strconv"
)

// serveProcs is how many threads may run ten serve's Go code at once
// (GOMAXPROCS) when the environment does not say: half of what Go would
// choose (the host's CPUs, or fewer under a cgroup CPU limit), rounded up,
// and at least one. ten shares the machine with the apps behind it; on a
// box whose cores the router, the apps and the clients share, fewer
// threads wake each other less (no idle thread spinning for work after
// every readiness event), which BENCHMARKS.md measured as more requests
// per second and a shorter tail than with a thread per CPU.
func serveProcs(goDefault int) int {
	return max(1, (goDefault+1)/2)
}

// setServeProcs applies serveProcs unless GOMAXPROCS is set in the
// environment (then Go's own reading of it stands), and logs the outcome.
func setServeProcs(log *slog.Logger) {
	cpus := runtime.NumCPU()
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			log.Warn("GOMAXPROCS is not a positive number; Go ignores it", "GOMAXPROCS", v, "threads", runtime.GOMAXPROCS(0), "cpus", cpus)
			return
		}
		log.Info("Go threads set by GOMAXPROCS", "threads", runtime.GOMAXPROCS(0), "cpus", cpus)
		return
	}
	n := serveProcs(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(n)
	log.Info("Go threads: half the CPUs, the rest for the apps (GOMAXPROCS overrides)", "threads", n, "cpus", cpus)
}
