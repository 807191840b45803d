//go:build linux

// Command tenant is a hostile tenant for ten's isolation tests: an HTTP app
// whose every endpoint tries one thing a tenant should (or should not) be
// able to do from inside its instance and reports what happened as JSON
// {"tried": ..., "ok": ..., "result": ..., "err": ...}. "ok" means the attempt
// succeeded; for an escape attempt that is a hole.
//
// It listens on the systemd socket (LISTEN_FDS), else SOCKET_PATH, else
// 127.0.0.1:$PORT, so it runs in every mode ten offers. It is static (no
// cgo) so that it runs the same under gVisor. It tries Linux-only escapes,
// so it builds on Linux only.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Report is the answer of every endpoint.
type Report struct {
	Tried  string `json:"tried"`
	OK     bool   `json:"ok"`
	Result any    `json:"result,omitempty"`
	Err    string `json:"err,omitempty"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		// A fork-bomb child: hold a task until killed.
		time.Sleep(time.Hour)
		return
	}
	l, err := listen()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tenant:", err)
		os.Exit(1)
	}
	fmt.Printf("tenant %s pid %d uid %d listening on %s\n", os.Getenv("TEN_INSTANCE"), os.Getpid(), os.Getuid(), l.Addr())
	mux := http.NewServeMux()
	for path, f := range handlers {
		mux.HandleFunc("/"+path, func(w http.ResponseWriter, r *http.Request) {
			rep := f(r)
			fmt.Printf("tried %s: ok=%v result=%v err=%s\n", rep.Tried, rep.OK, rep.Result, rep.Err)
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(rep)
		})
	}
	http.Serve(l, mux)
}

func listen() (net.Listener, error) {
	if n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS")); n > 0 {
		f := os.NewFile(3, "listen")
		return net.FileListener(f)
	}
	if p := os.Getenv("SOCKET_PATH"); p != "" {
		os.Remove(p)
		if l, err := net.Listen("unix", p); err == nil {
			return l, nil
		}
	}
	return net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
}

func errStr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func rep(tried string, result any, err error) Report {
	return Report{Tried: tried, OK: err == nil, Result: result, Err: errStr(err)}
}

func intArg(r *http.Request, k string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(k)); err == nil {
		return v
	}
	return def
}

var handlers = map[string]func(*http.Request) Report{
	"info": func(r *http.Request) Report {
		return Report{Tried: "info", OK: true, Result: map[string]any{"instance": os.Getenv("TEN_INSTANCE"), "pid": os.Getpid(), "uid": os.Getuid(), "gid": os.Getgid(), "data_dir": os.Getenv("DATA_DIR")}}
	},
	// proc lists the processes this tenant can see: pid → command name.
	"proc": func(r *http.Request) Report {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return rep("list /proc", nil, err)
		}
		seen := map[string]string{}
		for _, e := range ents {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
			seen[e.Name()] = strings.TrimSpace(string(comm))
		}
		return rep("list /proc", seen, nil)
	},
	"read": func(r *http.Request) Report {
		p := r.URL.Query().Get("path")
		tried := "read " + p
		st, err := os.Stat(p)
		if err != nil {
			return rep(tried, nil, err)
		}
		if st.IsDir() {
			ents, err := os.ReadDir(p)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			return rep(tried, names, err)
		}
		b, err := os.ReadFile(p)
		return rep(tried, string(b), err)
	},
	"write": func(r *http.Request) Report {
		p := r.URL.Query().Get("path")
		err := os.WriteFile(p, []byte("tenant was here\n"), 0o644)
		return rep("write "+p, nil, err)
	},
	"bind": func(r *http.Request) Report {
		a := r.URL.Query().Get("addr")
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		ln, err := lc.Listen(r.Context(), "tcp", a)
		if err == nil {
			ln.Close()
		}
		return rep("bind "+a, nil, err)
	},
	"connect": func(r *http.Request) Report {
		p := r.URL.Query().Get("path")
		c, err := net.DialTimeout("unix", p, 2*time.Second)
		if err == nil {
			c.Close()
		}
		return rep("connect to unix socket "+p, nil, err)
	},
	"setuid": func(r *http.Request) Report {
		runtime.LockOSThread() // the thread may change user; never reuse it
		err := unix.Setuid(0)
		if err == nil {
			return rep("setuid(0)", unix.Getuid(), nil)
		}
		return rep("setuid(0)", nil, err)
	},
	// unshare makes a child in new user and mount namespaces (clone flags;
	// unshare(2) of a multithreaded Go process would fail with EINVAL and
	// prove nothing).
	"unshare": func(r *http.Request) Report {
		cmd := exec.Command("/proc/self/exe", "child")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS}
		err := cmd.Start()
		if err == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		return rep("clone(CLONE_NEWUSER|CLONE_NEWNS)", nil, err)
	},
	"module": func(r *http.Request) Report {
		_, _, e1 := unix.Syscall(unix.SYS_INIT_MODULE, 0, 0, uintptr(unsafe.Pointer(unsafeStr(""))))
		f, ferr := os.Open("/proc/self/exe")
		var e2 error = ferr
		if ferr == nil {
			e2 = unix.FinitModule(int(f.Fd()), "", 0)
			f.Close()
		}
		var errs []error
		if e1 != 0 {
			errs = append(errs, fmt.Errorf("init_module: %w", e1))
		}
		if e2 != nil {
			errs = append(errs, fmt.Errorf("finit_module: %w", e2))
		}
		// ok only if a call got past the permission check (EPERM/ENOSYS are
		// refusals; EFAULT/ENOEXEC would mean the kernel looked at the image).
		refused := true
		for _, e := range []error{e1, e2} {
			if e != nil && e != syscall.Errno(0) && !errors.Is(e, unix.EPERM) && !errors.Is(e, unix.ENOSYS) && !errors.Is(e, unix.EACCES) {
				refused = false
			}
		}
		return Report{Tried: "init_module, finit_module", OK: !refused, Err: errStr(errors.Join(errs...))}
	},
	"ptrace": func(r *http.Request) Report {
		pid := intArg(r, "pid", 1)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := unix.PtraceAttach(pid)
		if err == nil {
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, unix.WALL, nil)
			unix.PtraceDetach(pid)
		}
		return rep("ptrace(PTRACE_ATTACH, "+strconv.Itoa(pid)+")", nil, err)
	},
	// alloc allocates and touches mb MiB and holds them for hold ms.
	"alloc": func(r *http.Request) Report {
		mb := intArg(r, "mb", 64)
		var chunks [][]byte
		for i := 0; i < mb; i++ {
			c := make([]byte, 1<<20)
			for j := 0; j < len(c); j += 4096 {
				c[j] = 1
			}
			chunks = append(chunks, c)
		}
		time.Sleep(time.Duration(intArg(r, "hold", 100)) * time.Millisecond)
		runtime.KeepAlive(chunks)
		return rep(fmt.Sprintf("allocate %d MiB", mb), len(chunks), nil)
	},
	// fork starts up to n processes, stops at the first failure, reports
	// how many ran, and kills them all.
	"fork": func(r *http.Request) Report {
		n := intArg(r, "n", 1000)
		var cmds []*exec.Cmd
		var err error
		for i := 0; i < n; i++ {
			c := exec.Command("/proc/self/exe", "child")
			if err = c.Start(); err != nil {
				break
			}
			cmds = append(cmds, c)
		}
		for _, c := range cmds {
			c.Process.Kill()
		}
		for _, c := range cmds {
			c.Wait()
		}
		res := map[string]any{"started": len(cmds), "asked": n}
		return Report{Tried: fmt.Sprintf("fork %d processes", n), OK: err == nil, Result: res, Err: errStr(err)}
	},
	// burn spins on every CPU for sec seconds and reports its own CPU time.
	"burn": func(r *http.Request) Report {
		d := time.Duration(intArg(r, "sec", 5)) * time.Second
		var before, after unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &before)
		start := time.Now()
		var wg sync.WaitGroup
		var spins atomic.Uint64
		for i := 0; i < runtime.NumCPU(); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x := uint64(0)
				for time.Since(start) < d {
					for k := 0; k < 100000; k++ {
						x += uint64(k) ^ x
					}
				}
				spins.Add(x)
			}()
		}
		wg.Wait()
		wall := time.Since(start)
		unix.Getrusage(unix.RUSAGE_SELF, &after)
		cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
		return rep(fmt.Sprintf("burn %d CPUs for %s", runtime.NumCPU(), d), map[string]any{
			"wall_ns": wall.Nanoseconds(), "cpu_ns": cpu.Nanoseconds(), "percent_of_one_cpu": 100 * cpu.Seconds() / wall.Seconds()}, nil)
	},
	// fill writes mb MiB to a file in the data dir.
	"fill": func(r *http.Request) Report {
		mb := intArg(r, "mb", 10)
		dir := os.Getenv("DATA_DIR")
		p := dir + "/" + r.URL.Query().Get("name")
		if r.URL.Query().Get("name") == "" {
			p = dir + "/fill"
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return rep("write to "+p, nil, err)
		}
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(i*7 + 1)
		}
		written := 0
		for i := 0; i < mb && err == nil; i++ {
			var n int
			n, err = f.Write(buf)
			written += n
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return rep(fmt.Sprintf("write %d MiB to %s", mb, p), map[string]any{"written": written, "enospc": errors.Is(err, unix.ENOSPC)}, err)
	},
	"uname": func(r *http.Request) Report {
		var u unix.Utsname
		err := unix.Uname(&u)
		return rep("uname", map[string]string{"release": unix.ByteSliceToString(u.Release[:]), "sysname": unix.ByteSliceToString(u.Sysname[:])}, err)
	},
	"ls": func(r *http.Request) Report {
		p := r.URL.Query().Get("path")
		ents, err := os.ReadDir(p)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		return rep("list "+p, names, err)
	},
}

func unsafeStr(s string) *byte {
	b, _ := unix.BytePtrFromString(s)
	return b
}
