// Package appcmd finds the program a service's command names and checks,
// before any unit is made, that the instance will be able to run it: that
// the file exists and is executable, and that the instance's sandbox shows
// it and its working directory to the instance's user. A command that
// cannot run would otherwise fail at every wake with a bare exit status in
// the journal.
package appcmd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tenhq/ten/config"
)

// hiddenRoots are hidden from sandboxed instances by ProtectHome.
var hiddenRoots = []string{"/home", "/root", "/run/user"}

// Resolve returns the absolute path of cmd (the command's first word) for
// svc. A relative path with a '/' (./run.sh) is taken in workdir, the
// directory the app runs in (the config file's directory unless workdir is
// set); a bare name is looked up in PATH.
func Resolve(cmd, workdir string, svc *config.Service) (string, error) {
	p := cmd
	if !filepath.IsAbs(p) {
		if strings.Contains(p, "/") {
			if !filepath.IsAbs(workdir) {
				return "", fmt.Errorf("relative command %q: the working directory %q is not absolute", cmd, workdir)
			}
			p = filepath.Join(workdir, p)
		} else {
			found, err := exec.LookPath(p)
			if err != nil {
				return "", fmt.Errorf("%q not found in PATH (%s)", cmd, os.Getenv("PATH"))
			}
			p = found
		}
	}
	p = filepath.Clean(p)
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%s: %v", p, errors.Unwrap(err))
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file (chmod +x %s)", p, p)
	}
	if svc.Isolation == config.IsolationProcess {
		return p, nil
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		real = p
	}
	for _, paths := range [][2]string{{real, "command"}, {workdir, "working directory"}} {
		for _, hidden := range hiddenRoots {
			if paths[0] != "" && within(paths[0], hidden) {
				return "", fmt.Errorf("%s %s is under %s, which isolation = %q hides from the instance (ProtectHome); move it elsewhere (e.g. /srv or /opt), set workdir, or use isolation = \"process\"", paths[1], paths[0], hidden, svc.Isolation)
			}
		}
	}
	if svc.Isolation != config.IsolationNamespace {
		return p, nil // gVisor runs the app as root inside the sandbox
	}
	// Under DynamicUser the app runs as a user that owns nothing on the
	// host: it reaches only what "others" may.
	if workdir != "" {
		if err := reach(workdir, true, false, workdir); err != nil {
			return "", fmt.Errorf("working directory: %w", err)
		}
	}
	if err := reach(real, false, isScript(real), workdir); err != nil {
		return "", err
	}
	return p, nil
}

// reach checks that a user with no rights but "others" can get to path:
// search (x) on every directory on the way, and x (and r for a script
// the kernel hands to its interpreter) on the file. /tmp and /var/tmp are
// the unit's own (PrivateTmp), with the app's directories bound in by
// path: there only the directories from the bound one down count.
func reach(path string, isDir, script bool, workdir string) error {
	// The directories on the way, from the top one that counts down.
	top := "/"
	if within(path, "/tmp") || within(path, "/var/tmp") {
		top = filepath.Dir(path)
		if isDir {
			top = path
		}
		if workdir != "" && within(path, workdir) {
			top = workdir
		}
	}
	var dirs []string
	if isDir {
		dirs = append(dirs, path)
	}
	for d := filepath.Dir(path); within(d, top) && d != path; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == top {
			break
		}
	}
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("%s: %v", d, errors.Unwrap(err))
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s: the instance's user (isolation = \"namespace\": a DynamicUser that owns nothing on the host) cannot enter %s (mode %04o): chmod o+x %s, move it, or use isolation = \"process\"", path, d, st.Mode().Perm(), d)
		}
	}
	if isDir {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	need, what, mode := os.FileMode(0o001), "execute", "o+x"
	if script {
		need, what, mode = 0o005, "read and execute (a script)", "o+rx"
	}
	if st.Mode().Perm()&need != need {
		return fmt.Errorf("%s: the instance's user (isolation = \"namespace\": a DynamicUser that owns nothing on the host) cannot %s it (mode %04o): chmod %s %s, or use isolation = \"process\"", path, what, st.Mode().Perm(), mode, path)
	}
	return nil
}

// isScript reports whether the file starts with "#!".
func isScript(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 2)
	_, err = io.ReadFull(f, b)
	return err == nil && bytes.Equal(b, []byte("#!"))
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
