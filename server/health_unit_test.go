package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tenhq/ten/units"
)

func TestStateSurvivesReload(t *testing.T) {
	dir := t.TempDir()
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := units.Instance{Service: "api", ID: "v1"}, units.Instance{Service: "api", ID: "v2"}
	if w := st.weight(a); w != 100 {
		t.Errorf("default weight %d", w)
	}
	if err := st.update(func(p *persisted) {
		p.Weights[a.String()] = 0
		p.Weights[b.String()] = 40
		p.Failed[b.String()] = "why"
	}); err != nil {
		t.Fatal(err)
	}
	st2, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st2.weight(a) != 0 || st2.weight(b) != 40 || st2.failed(b) != "why" {
		t.Errorf("reloaded: %+v", st2.p)
	}
	if err := st2.forget(b); err != nil {
		t.Fatal(err)
	}
	if st2.weight(b) != 100 || st2.failed(b) != "" {
		t.Errorf("after forget: %+v", st2.p)
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != stateFile {
		t.Errorf("data dir holds %v", ents)
	}
	// A corrupt file is an error that names it, not a silent reset to 100.
	os.WriteFile(filepath.Join(dir, stateFile), []byte("{"), 0o600)
	if _, err := loadState(dir); err == nil {
		t.Error("corrupt state.json accepted")
	}
}

func TestCodeClass(t *testing.T) {
	for code, want := range map[int]string{200: "2xx", 204: "2xx", 301: "3xx", 404: "4xx", 499: "4xx", 503: "5xx", 0: "other", 700: "other"} {
		if got := codeClass(code); got != want {
			t.Errorf("codeClass(%d) = %q, want %q", code, got, want)
		}
	}
}
