package isolation

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/units"
)

func TestDirUsage(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"x": 10, "a/y": 4096, "a/b/z": 1} {
		if err := os.WriteFile(filepath.Join(root, name), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A symlink out of the tree is not followed.
	if err := os.Symlink("/usr", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	size, disk, files, err := DirUsage(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if size != 10+4096+1+int64(len("/usr")) || files != 4 {
		t.Errorf("DirUsage = size %d, files %d; want %d bytes in 4 files", size, files, 10+4096+1+len("/usr"))
	}
	if disk <= 0 {
		t.Errorf("disk = %d", disk)
	}
	if size, _, files, err := DirUsage(context.Background(), filepath.Join(root, "missing")); err != nil || size != 0 || files != 0 {
		t.Errorf("DirUsage of a missing directory = %d %d %v, want empty", size, files, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, _, err := DirUsage(ctx, root); err == nil {
		t.Error("DirUsage went on after its context ended")
	}
}

// mounts records a Storage's mount units.
type mounts struct{ mounted, unmounted []string }

func (m *mounts) Mount(_ context.Context, what, where, _, _, _ string) error {
	m.mounted = append(m.mounted, what+" "+where)
	return nil
}

func (m *mounts) Unmount(_ context.Context, where string) error {
	m.unmounted = append(m.unmounted, where)
	return nil
}

// Without storage_quota_mb there is no image to make or mount, and an
// instance that never had one is released without touching a mount.
func TestQuotaWithout(t *testing.T) {
	cfg := &config.Config{Settings: config.Settings{DataDir: t.TempDir()}}
	m := &mounts{}
	st := NewStorage(cfg, m, nil)
	inst := units.Instance{Service: "api", ID: "prod"}
	svc := &config.Service{}
	if err := st.PrepareQuota(context.Background(), svc, inst); err != nil {
		t.Fatal(err)
	}
	st.ReleaseQuota(context.Background(), svc, inst)
	if len(m.mounted)+len(m.unmounted) != 0 {
		t.Errorf("mounts %+v without storage_quota_mb", m)
	}
	if used, quota := QuotaUse(cfg, svc, inst); used != 0 || quota != 0 {
		t.Errorf("QuotaUse without a quota = %d, %d", used, quota)
	}
	if used, quota := QuotaUse(cfg, nil, inst); used != 0 || quota != 0 {
		t.Errorf("QuotaUse of an undeclared service = %d, %d", used, quota)
	}
	if got, want := st.QuotaImage(inst), filepath.Join(cfg.DataDirAbs(), "storage", "api", "prod.img"); got != want {
		t.Errorf("QuotaImage = %s, want %s", got, want)
	}
}

// A tenant's requests for its storage share one walk: many at once, or one
// after another within MeterTTL, walk the tree once.
func TestMeterShares(t *testing.T) {
	dataDir := t.TempDir()
	cfg := &config.Config{}
	cfg.Settings.DataDir = dataDir
	svc := &config.Service{Name: "api"}
	inst := units.Instance{Service: "api", ID: "acme"}
	dir := filepath.Join(dataDir, "api", "acme")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 3 * dirBatch {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var m Meter
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := m.Measure(context.Background(), cfg, svc, inst)
			if err != nil || st.Files != 3*dirBatch || st.Path != dir {
				t.Errorf("Measure = %+v, %v; want %d files in %s", st, err, 3*dirBatch, dir)
			}
		}()
	}
	wg.Wait()
	// A file more within MeterTTL: the answer is the one already made.
	os.WriteFile(filepath.Join(dir, "more"), nil, 0o644)
	if st, _ := m.Measure(context.Background(), cfg, svc, inst); st.Files != 3*dirBatch {
		t.Errorf("a second measure within MeterTTL walked again: %d files", st.Files)
	}
	// A caller that leaves does not fail the measure for the next.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.Measure(ctx, cfg, svc, units.Instance{Service: "api", ID: "other"})
	if _, err := m.Measure(context.Background(), cfg, svc, units.Instance{Service: "api", ID: "other"}); err != nil {
		t.Errorf("the next caller: %v", err)
	}
}

// TestReleaseDataBindEarlierConfig: with data_dir set, the bind a namespace
// instance got at spawn is released at stop also when the config changed
// meanwhile: its service no longer declared, or moved to isolation =
// "process" (whose instances get no bind). Without data_dir there is none.
func TestReleaseDataBindEarlierConfig(t *testing.T) {
	inst := units.Instance{Service: "api", ID: "prod"}
	want := "/var/lib/private/tenement/api/prod"
	for name, svc := range map[string]*config.Service{
		"namespace":  {Name: "api", Isolation: config.IsolationNamespace},
		"process":    {Name: "api", Isolation: config.IsolationProcess},
		"undeclared": nil,
	} {
		cfg, err := config.Parse("tenement.toml", []byte("[settings]\ndata_dir = \""+t.TempDir()+"\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		m := &mounts{}
		NewStorage(cfg, m, nil).ReleaseDataBind(context.Background(), svc, inst)
		if len(m.unmounted) != 1 || m.unmounted[0] != want {
			t.Errorf("%s: unmounted %v, want [%s]", name, m.unmounted, want)
		}
	}
	cfg, err := config.Parse("tenement.toml", []byte("[settings]\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := &mounts{}
	NewStorage(cfg, m, nil).ReleaseDataBind(context.Background(), nil, inst)
	if len(m.unmounted) != 0 {
		t.Errorf("without data_dir: unmounted %v", m.unmounted)
	}
}
