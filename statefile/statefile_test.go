package statefile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tenhq/ten/units"
)

func TestStateSurvivesReload(t *testing.T) {
	dir := t.TempDir()
	st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := units.Instance{Service: "api", ID: "v1"}, units.Instance{Service: "api", ID: "v2"}
	if w := st.Weight(a); w != 100 {
		t.Errorf("default weight %d", w)
	}
	if err := st.Update(func(p *Persisted) {
		p.Weights[a.String()] = 0
		p.Weights[b.String()] = 40
		p.Failed[b.String()] = "why"
	}); err != nil {
		t.Fatal(err)
	}
	st2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Weight(a) != 0 || st2.Weight(b) != 40 || st2.FailedMark(b.String()) != "why" {
		t.Errorf("reloaded: %+v", st2.p)
	}
	if err := st2.Forget(b); err != nil {
		t.Fatal(err)
	}
	if st2.Weight(b) != 100 || st2.FailedMark(b.String()) != "" {
		t.Errorf("after forget: %+v", st2.p)
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != File {
		t.Errorf("data dir holds %v", ents)
	}
	// A corrupt file is an error that names it, not a silent reset to 100.
	os.WriteFile(filepath.Join(dir, File), []byte("{"), 0o600)
	if _, err := Load(dir); err == nil {
		t.Error("corrupt state.json accepted")
	}
}
