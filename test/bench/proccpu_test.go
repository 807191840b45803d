package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procStat reads a process's CPU time so far (user + system, all its
// threads) and its process group from /proc/PID/stat.
func procStat(pid int) (cpu time.Duration, pgrp int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces: fields count from after
	// its closing parenthesis (state, field 3, is f[0]).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	pgrp, _ = strconv.Atoi(f[2])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux, the unit of these fields
	return time.Duration(ut+st) * time.Second / hz, pgrp, nil
}

// groupCPU is the CPU time used so far by the processes of a process
// group (nginx's master and workers, started with Setpgid).
func groupCPU(pgrp int) time.Duration {
	ents, _ := os.ReadDir("/proc")
	var sum time.Duration
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cpu, g, err := procStat(pid); err == nil && g == pgrp {
			sum += cpu
		}
	}
	return sum
}

// withCPU runs load and adds to its report the CPU that cpu measured
// during it, per request served: a proxy's CPU per request varies far
// less between runs on a shared machine than its requests/s.
func withCPU(cpu func() time.Duration, load func() wrkReport) wrkReport {
	before := cpu()
	r := load()
	if r.Requests > 0 {
		r.CPUPerReqUS = float64((cpu() - before).Nanoseconds()) / 1e3 / float64(r.Requests)
	}
	return r
}
