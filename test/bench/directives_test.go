package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// directive is one variant of the per-directive benchmark: unit-file lines
// added to the [Service] section of a plain socket-activated echoapp.
type directive struct {
	name  string
	lines string
	// exec, when set, replaces ExecStart (ECHO is echoapp's path, TEN ten's).
	exec string
}

// namespaceSet is ten's isolation = "namespace" as unit-file lines (what
// units.sandboxProps sets; keep in step), without the per-instance user,
// state and runtime directories, which have rows of their own.
const namespaceSet = `DynamicUser=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectProc=invisible
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
NoNewPrivileges=yes
RestrictNamespaces=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
`

// directives are measured one at a time on top of plain socket activation,
// then as sets. Each Protect*/Private* directive that needs a mount
// namespace makes systemd set one up, so the first such directive pays for
// the namespace and the set row shows what they cost together.
var directives = []directive{
	{name: "none (socket activation alone)"},
	{name: "DynamicUser=yes", lines: "DynamicUser=yes\n"},
	{name: "User= a static system user", lines: "User=" + staticUser + "\n"},
	{name: "User= static + StateDirectory", lines: "User=" + staticUser + "\nStateDirectory=ten-bench-dir/su\n"},
	{name: "DynamicUser + StateDirectory", lines: "DynamicUser=yes\nStateDirectory=ten-bench-dir/du\n"},
	{name: "StateDirectory (root)", lines: "StateDirectory=ten-bench-dir/root\n"},
	{name: "RuntimeDirectory", lines: "RuntimeDirectory=ten-bench-dir-rt\n"},
	{name: "WorkingDirectory + StateDirectory", lines: "StateDirectory=ten-bench-dir/wd\nWorkingDirectory=/var/lib/ten-bench-dir/wd\n"},
	{name: "ProtectSystem=strict", lines: "ProtectSystem=strict\n"},
	{name: "ProtectHome=yes", lines: "ProtectHome=yes\n"},
	{name: "ProtectHome=tmpfs", lines: "ProtectHome=tmpfs\n"},
	{name: "PrivateTmp=yes", lines: "PrivateTmp=yes\n"},
	{name: "TemporaryFileSystem=/tmp", lines: "TemporaryFileSystem=/tmp /var/tmp\n"},
	{name: "PrivateDevices=yes", lines: "PrivateDevices=yes\n"},
	{name: "ProtectProc=invisible", lines: "ProtectProc=invisible\n"},
	{name: "ProcSubset=pid", lines: "ProcSubset=pid\n"},
	{name: "ProtectKernelTunables=yes", lines: "ProtectKernelTunables=yes\n"},
	{name: "ProtectKernelModules=yes", lines: "ProtectKernelModules=yes\n"},
	{name: "ProtectKernelLogs=yes", lines: "ProtectKernelLogs=yes\n"},
	{name: "ProtectControlGroups=yes", lines: "ProtectControlGroups=yes\n"},
	{name: "ProtectHostname=yes", lines: "ProtectHostname=yes\n"},
	{name: "ProtectClock=yes", lines: "ProtectClock=yes\n"},
	{name: "PrivateMounts=yes", lines: "PrivateMounts=yes\n"},
	{name: "PrivateUsers=yes", lines: "PrivateUsers=yes\n"},
	{name: "NoNewPrivileges=yes", lines: "NoNewPrivileges=yes\n"},
	{name: "CapabilityBoundingSet= (empty)", lines: "CapabilityBoundingSet=\nAmbientCapabilities=\n"},
	{name: "RestrictNamespaces=yes", lines: "RestrictNamespaces=yes\n"},
	{name: "SystemCallFilter=@system-service", lines: "SystemCallFilter=@system-service\nSystemCallErrorNumber=EPERM\n"},
	{name: "SystemCallArchitectures=native", lines: "SystemCallArchitectures=native\n"},
	{name: "RestrictAddressFamilies", lines: "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"},
	{name: "LockPersonality, RestrictRealtime, RestrictSUIDSGID", lines: "LockPersonality=yes\nRestrictRealtime=yes\nRestrictSUIDSGID=yes\n"},
	{name: "MemoryDenyWriteExecute=yes", lines: "MemoryDenyWriteExecute=yes\n"},
	{name: "IPAddressDeny=any + allow localhost", lines: "IPAddressDeny=any\nIPAddressAllow=localhost\n"},
	{name: "UMask=0077", lines: "UMask=0077\n"},
	{name: "BindReadOnlyPaths", lines: "BindReadOnlyPaths=/run/ten-bench/www:/srv/www\n"},
	{name: "Slice= (own slice per instance)", lines: "Slice=ten-bench-dir-own.slice\n"},
	{name: "MemoryAccounting + CPUAccounting", lines: "MemoryAccounting=yes\nCPUAccounting=yes\n"},
	{name: "systemd-cat in front", exec: "/usr/bin/systemd-cat --identifier=echoapp --stderr-priority=err -- ECHO --mode activation"},
	{name: "ten-shim cat in front", exec: "SHIMBIN cat --instance=bench:cat --identifier=echoapp -- ECHO --mode activation"},
	// The same flags in another order: the C fast path leaves it to Go.
	{name: "ten-shim cat in front, Go path only", exec: "SHIMBIN cat --identifier=echoapp --instance=bench:cat -- ECHO --mode activation"},
	{name: "ten's shim in front (PORT app)", lines: "RuntimeDirectory=ten-bench-dir-shim\nEnvironment=PORT=SHIMPORT\n",
		exec: "TEN shim --instance=bench:shim --socket=/run/ten-bench-dir-shim/app.sock --port=SHIMPORT --startup-timeout=10s -- ECHO --mode port"},
	{name: "SystemCallFilter deny list", lines: "SystemCallFilter=" + denyList + "\nSystemCallErrorNumber=EPERM\n"},
	{name: "SystemCallFilter=@system-service + SystemCallArchitectures=native", lines: "SystemCallFilter=@system-service\nSystemCallErrorNumber=EPERM\nSystemCallArchitectures=native\n"},
	{name: "set: ten namespace (before issue 13)", lines: namespaceSet + "StateDirectory=ten-bench-dir/ns\nRuntimeDirectory=ten-bench-dir-ns\n"},
	{name: "set: ten namespace (after issue 13)", lines: namespaceSet + hardenedSet + "StateDirectory=ten-bench-dir/ns2\nRuntimeDirectory=ten-bench-dir-ns2\n"},
	{name: "set: after issue 13, deny-list SystemCallFilter", lines: strings.Replace(namespaceSet, "SystemCallFilter=@system-service", "SystemCallFilter="+denyList, 1) + hardenedSet + "StateDirectory=ten-bench-dir/ns3\nRuntimeDirectory=ten-bench-dir-ns3\n"},
	{name: "set: after issue 13, /sys read-only instead of ProtectKernelTunables", lines: strings.Replace(namespaceSet, "ProtectKernelTunables=yes\n", "ReadOnlyPaths=/sys\n", 1) + hardenedSet + "StateDirectory=ten-bench-dir/ns5\nRuntimeDirectory=ten-bench-dir-ns5\n"},
	{name: "set: after issue 13, DevicePolicy=closed instead of PrivateDevices", lines: strings.Replace(namespaceSet, "PrivateDevices=yes\n", devicePolicy, 1) + hardenedSet + "StateDirectory=ten-bench-dir/ns6\nRuntimeDirectory=ten-bench-dir-ns6\n"},
	{name: "set: after issue 13, both of the above", lines: strings.NewReplacer("PrivateDevices=yes\n", devicePolicy, "ProtectKernelTunables=yes\n", "ReadOnlyPaths=/sys\n").Replace(namespaceSet) + hardenedSet + "StateDirectory=ten-bench-dir/ns7\nRuntimeDirectory=ten-bench-dir-ns7\n"},
	{name: "set: after issue 13, static user instead of DynamicUser", lines: strings.Replace(namespaceSet, "DynamicUser=yes", "User="+staticUser, 1) + hardenedSet + "StateDirectory=ten-bench-dir/ns4\nRuntimeDirectory=ten-bench-dir-ns4\n"},
}

// processSet is ten's isolation = "process" unit as unit-file lines (what
// units.Plan makes for a socket-activated app; keep in step), with each
// part on a line of its own so that processSets can leave one out. Its
// ExecStart is processExec.
var processSet = []string{
	"StateDirectory=ten-bench-dir/proc\nStateDirectoryMode=0700\n",
	"RuntimeDirectory=ten-bench-dir-proc\nRuntimeDirectoryMode=0700\n",
	"WorkingDirectory=/etc\n",
	"Slice=ten-bench-dir-proc.slice\n",
	"MemoryAccounting=yes\nCPUAccounting=yes\n",
	"TasksMax=1024\n",
	"LogRateLimitIntervalSec=10s\nLogRateLimitBurst=1000\n",
	"Environment=DATA_DIR=/var/lib/ten-bench-dir/proc PORT=20001 SOCKET_PATH=/run/ten-bench-dir-proc/app.sock TEN_INSTANCE=bench:proc\n",
}

// processExec is the process set's ExecStart: the app under ten-shim cat.
const processExec = "SHIMBIN cat --instance=bench:proc --identifier=echoapp -- ECHO --mode activation"

// processSets are the process set whole, without ten-shim cat, and with one
// part left out at a time.
func processSets() []directive {
	out := []directive{
		{name: "set: ten process", lines: strings.Join(processSet, ""), exec: processExec},
		{name: "set: ten process without ten-shim cat", lines: strings.Join(processSet, "")},
	}
	for i, l := range processSet {
		rest := append(append([]string(nil), processSet[:i]...), processSet[i+1:]...)
		out = append(out, directive{name: "set: ten process without " + strings.SplitN(l, "=", 2)[0],
			lines: strings.Join(rest, ""), exec: processExec})
	}
	return out
}

// devicePolicy keeps the host's /dev visible but lets the cgroup's device
// filter refuse every device but the harmless ones (no new /dev mount).
const devicePolicy = "DevicePolicy=closed\nDeviceAllow=/dev/null rw\nDeviceAllow=/dev/zero rw\nDeviceAllow=/dev/full rw\nDeviceAllow=/dev/random rw\nDeviceAllow=/dev/urandom rw\n"

// hardenedSet is what issue 13 added to the namespace level.
const hardenedSet = `SystemCallArchitectures=native
CapabilityBoundingSet=
AmbientCapabilities=
PrivateUsers=yes
ProcSubset=pid
RestrictRealtime=yes
ProtectHostname=yes
ProtectClock=yes
PrivateMounts=yes
UMask=0077
`

// denyList is a SystemCallFilter that denies the groups @system-service
// leaves out, instead of allowing @system-service: fewer rules to compile.
const denyList = "~@clock @cpu-emulation @debug @module @mount @obsolete @privileged @raw-io @reboot @swap"

// BenchmarkSandboxDirectives: the cost of each sandbox directive on one
// wake on this systemd. A socket-activated echoapp behind a plain socket
// unit (client on the unix socket, no proxy: what BenchmarkColdWake calls
// "systemd socket activation alone") gets one directive added per variant;
// every round wakes each variant once in a shuffled order, so noise hits all
// of them alike, and "added" is each sample minus the same round's sample
// without any directive. TEN_BENCH_DIRECTIVES_N rounds (15);
// TEN_BENCH_DIRECTIVES_ONLY=word,word keeps the variants whose name
// contains a word. Besides wall time (which grows with the machine's load)
// each variant gets a row of CPU time per wake, which hardly does.
func BenchmarkSandboxDirectives(b *testing.B) {
	if !once(b) {
		return
	}
	setup(b)
	rounds := envInt("TEN_BENCH_DIRECTIVES_N", 15)
	all := append([]directive(nil), directives...)
	all = append(all, directiveSets()...)
	all = append(all, processSets()...)
	if only := os.Getenv("TEN_BENCH_DIRECTIVES_ONLY"); only != "" {
		// A quick look at a few: the baseline and the variants whose name
		// contains one of the comma-separated words.
		keep := all[:1]
		for _, d := range all[1:] {
			for _, w := range strings.Split(only, ",") {
				if strings.Contains(d.name, w) {
					keep = append(keep, d)
					break
				}
			}
		}
		all = keep
	}
	type variant struct {
		d    directive
		sock string
		unit string
	}
	// A static system user, as ten could allocate one per instance at
	// spawn instead of DynamicUser's allocation at every start.
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", staticUser).CombinedOutput(); err != nil && !strings.Contains(string(out), "already exists") {
		b.Fatalf("useradd %s: %v %s", staticUser, err, out)
	}
	b.Cleanup(func() { exec.Command("userdel", staticUser).Run() })
	shimPort := freePort(b)
	files := map[string]string{}
	var vs []variant
	for i, d := range all {
		name := fmt.Sprintf("ten-bench-dir-%02d", i)
		sock := "/run/" + name + ".sock"
		execStart := d.exec
		if execStart == "" {
			execStart = "ECHO --mode activation"
		}
		r := strings.NewReplacer("ECHO", echoBin, "SHIMBIN", filepath.Join(binDir, "ten-shim"), "TEN", tenBin, "SHIMPORT", strconv.Itoa(shimPort))
		files[name+".socket"] = fmt.Sprintf("[Socket]\nListenStream=%s\nTriggerLimitIntervalSec=0\n", sock)
		files[name+".service"] = fmt.Sprintf("[Unit]\nStartLimitIntervalSec=0\n[Service]\nEnvironment=TEN_INSTANCE=dir\nExecStart=%s\n%s", r.Replace(execStart), r.Replace(d.lines))
		vs = append(vs, variant{d: d, sock: sock, unit: name + ".service"})
	}
	writeUnits(b, files)
	b.Cleanup(func() { os.RemoveAll("/var/lib/ten-bench-dir"); os.RemoveAll("/var/lib/private/ten-bench-dir") })
	for _, v := range vs {
		systemctl(b, "start", strings.TrimSuffix(v.unit, ".service")+".socket")
	}
	samples := make([][]time.Duration, len(vs))
	cpu := make([][]time.Duration, len(vs))
	failed := make([]string, len(vs))
	rng := rand.New(rand.NewPCG(13, 13))
	// Round 0 warms caches (and makes the state directories) and is not counted.
	for r := 0; r <= rounds; r++ {
		for _, i := range rng.Perm(len(vs)) {
			v := vs[i]
			if failed[i] != "" {
				continue
			}
			systemctl(b, "stop", v.unit)
			pid1 := schedRun(1)
			d, err := firstByteNet("unix", v.sock, "localhost", 10*time.Second)
			pid1 = schedRun(1) - pid1
			if err != nil {
				// A directive this systemd cannot apply: say why, go on.
				out, _ := exec.Command("journalctl", "-q", "-n", "3", "-u", v.unit).CombinedOutput()
				failed[i] = fmt.Sprintf("%v; journal: %s", err, strings.Join(strings.Fields(string(out)), " "))
				if i == 0 {
					b.Fatalf("socket activation alone failed: %s", failed[i])
				}
				continue
			}
			if r > 0 {
				samples[i] = append(samples[i], d)
				main, _ := strconv.Atoi(strings.TrimSpace(showProp(v.unit, "MainPID")))
				cpu[i] = append(cpu[i], pid1+schedRun(main))
			}
		}
	}
	const bench = "8 sandbox directives"
	base := samples[0]
	bst := summarize(base)
	for i, v := range vs {
		if failed[i] != "" {
			addNote("sandbox directives: %s failed: %s", v.d.name, failed[i])
			continue
		}
		st := summarize(samples[i])
		r := durRow(bench, v.d.name, "socket activation: connect → first byte", st)
		if i > 0 {
			added := make([]time.Duration, len(base))
			for k := range base {
				added[k] = samples[i][k] - base[k]
			}
			ad := summarize(added)
			r.ratio = ratio(float64(st.p50), float64(bst.p50), "none")
			r.note = fmt.Sprintf("added (paired by round): p50 %s, p99 %s", fmtDur(ad.p50), fmtDur(ad.p99))
		}
		addRow(r)
		ct := summarize(cpu[i])
		cr := durRow(bench, v.d.name, "CPU per wake: systemd (PID 1) + the unit's main thread", ct)
		if i > 0 {
			base := summarize(cpu[0])
			cr.ratio = ratio(float64(ct.p50), float64(base.p50), "none")
			cr.note = fmt.Sprintf("added p50 %s", fmtDur(ct.p50-base.p50))
		}
		addRow(cr)
	}
}

// directiveSets are ten's namespace set with one directive left out at a
// time: the marginal cost of each inside a mount namespace that the others
// already make.
func directiveSets() []directive {
	lines := strings.Split(strings.TrimSpace(namespaceSet), "\n")
	var out []directive
	for i, l := range lines {
		if strings.HasPrefix(l, "SystemCallErrorNumber") {
			continue
		}
		rest := append(append([]string(nil), lines[:i]...), lines[i+1:]...)
		if strings.HasPrefix(l, "SystemCallFilter") {
			rest = slicesDeleteFunc(rest, func(s string) bool { return strings.HasPrefix(s, "SystemCallErrorNumber") })
		}
		out = append(out, directive{name: "set: ten namespace without " + strings.SplitN(l, "=", 2)[0],
			lines: strings.Join(rest, "\n") + "\n"})
	}
	return out
}

func slicesDeleteFunc(s []string, del func(string) bool) []string {
	out := s[:0]
	for _, x := range s {
		if !del(x) {
			out = append(out, x)
		}
	}
	return out
}

// staticUser is the system user of the static-user variants.
const staticUser = "ten-bench-static"

// schedRun is the CPU time a task has run so far (the first field of
// /proc/PID/schedstat, in ns): for PID 1, systemd's own work; for a
// service's main process, the fork, the sandbox setup before exec and the
// app's main thread. Unlike wall time it does not grow with the load of
// other work on the machine; 0 when the task is gone.
func schedRun(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	ns, _ := strconv.ParseInt(f[0], 10, 64)
	return time.Duration(ns)
}

func showProp(unit, prop string) string {
	out, _ := exec.Command("systemctl", "show", "-p", prop, "--value", unit).Output()
	return string(out)
}
