package ebpf

import (
	"errors"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tenhq/ten/bpf/internal/bpftest"
)

// TestSupported: this project's kernels (6.x) have everything; a missing
// feature is a failure, not a skip.
func TestSupported(t *testing.T) {
	bpftest.RequireRoot(t)
	if err := Supported(); err != nil {
		t.Fatalf("Supported() = %v", err)
	}
}

func TestSupportedWithoutPrivilege(t *testing.T) {
	bpftest.RequireRoot(t)
	done := make(chan error)
	go func() {
		// Drop every capability on this thread only; it ends with the goroutine.
		runtime.LockOSThread() // never unlocked
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		done <- Supported()
	}()
	err := <-done
	if !errors.Is(err, ErrNoPrivilege) {
		t.Errorf("Supported() without capabilities = %v, want ErrNoPrivilege", err)
	}
}

func TestCgroupID(t *testing.T) {
	root, err := CgroupV2Root()
	if err != nil {
		t.Skipf("no cgroup v2 here: %v", err)
	}
	id, err := CgroupID(root)
	if err != nil || id == 0 {
		t.Errorf("CgroupID(%s) = %d, %v", root, id, err)
	}
	if _, err := CgroupID(t.TempDir()); err == nil {
		t.Error("CgroupID of a plain directory succeeded")
	}
}

func TestEnsureBPFFS(t *testing.T) {
	bpftest.PrivateMounts(t)
	dir := filepath.Join(t.TempDir(), "bpf")
	if err := EnsureBPFFS(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	if ok, err := isBPFFS(dir); !ok || err != nil {
		t.Fatalf("after EnsureBPFFS: bpffs=%v err=%v", ok, err)
	}
	if err := EnsureBPFFS(dir); err != nil { // mounted already: nothing to do
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(dir), &st); err != nil || st.Type == unix.BPF_FS_MAGIC {
		t.Errorf("bpffs mounted over the parent too")
	}
}
