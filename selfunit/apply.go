package selfunit

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Apply writes the unit files into dir (/etc/systemd/system, or
// /run/systemd/system for an install that ends at reboot), copies ten to
// o.Binary (and its ten-shim beside it), reloads systemd and starts the socket and the service.
func Apply(o Options, dir, self string, out io.Writer) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if err := InstallBinaries(self, o.Binary, out); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := Files(o)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte(files[n]), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		fmt.Fprintf(out, "wrote %s\n", p)
	}
	steps := [][]string{{"daemon-reload"}, {"enable", "--now", SocketName}, {"restart", ServiceName}}
	if strings.HasPrefix(dir, "/run/") {
		steps[1] = []string{"start", SocketName}
	}
	for _, args := range steps {
		if b, err := exec.Command("systemctl", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
		}
	}
	fmt.Fprintf(out, "started %s and %s\n", SocketName, ServiceName)
	return nil
}

// Remove stops and removes ten's own units from dir. Instances are units of
// their own and keep running; `ten stop` removes them.
func Remove(dir string, out io.Writer) error {
	_ = exec.Command("systemctl", "disable", "--now", SocketName, ServiceName).Run()
	_ = exec.Command("systemctl", "stop", SocketName, ServiceName).Run()
	for _, n := range []string{ServiceName, SocketName} {
		p := filepath.Join(dir, n)
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		} else if err == nil {
			fmt.Fprintf(out, "removed %s\n", p)
		}
	}
	if b, err := exec.Command("systemctl", "daemon-reload").CombinedOutput(); err != nil {
		return fmt.Errorf("systemctl daemon-reload: %v: %s", err, b)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
