package systemd

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tenhq/ten/units"
)

func TestParseTransientEnv(t *testing.T) {
	file := `# This is a transient unit file, created programmatically via the systemd API. Do not edit.
[Unit]
Description=ten instance d:sd09999
Environment="NOT=a service line"

[Service]
Slice=tenement-d.slice
ExecStart="/bin/echoapp" "--mode" "activation"
Environment="DATA_DIR=/var/lib/tenement/d/sd09999" "PORT=39999" "TEN_INSTANCE=d:sd09999"
Environment="Q=a \"quoted\" word" "T=tab\there" "P=100%%" "X=\x41\101" "U=\xc3\xa9\'"
Restart=on-failure
`
	got, ok := parseTransientEnv([]byte(file))
	want := []string{"DATA_DIR=/var/lib/tenement/d/sd09999", "PORT=39999", "TEN_INSTANCE=d:sd09999",
		`Q=a "quoted" word`, "T=tab\there", "P=100%", "X=AA", "U=é'"}
	if !ok || !slices.Equal(got, want) {
		t.Fatalf("got %q %v, want %q", got, ok, want)
	}
	// An empty assignment resets the list.
	got, ok = parseTransientEnv([]byte("[Service]\nEnvironment=\"A=1\"\nEnvironment=\nEnvironment=\"B=2\"\n"))
	if !ok || !slices.Equal(got, []string{"B=2"}) {
		t.Errorf("reset: %q %v", got, ok)
	}
	// What systemd does not write is not guessed at: the caller asks systemd.
	for _, bad := range []string{
		"[Service]\nEnvironment=PORT=1\n",
		"[Service]\nEnvironment=\"PORT=1\n",
		"[Service]\nEnvironment=\"PORT=\\q\"\n",
		"[Service]\nEnvironment=\"A=1\" \\\n \"B=2\"\n",
	} {
		if got, ok := parseTransientEnv([]byte(bad)); ok {
			t.Errorf("%q: %q, want not ok", bad, got)
		}
	}
}

func TestTransientEnvironmentFile(t *testing.T) {
	dir := t.TempDir()
	inst := units.Instance{Service: "d", ID: "a"}
	if _, ok := TransientEnvironment(dir, inst); ok {
		t.Fatal("a missing file read as ok")
	}
	if err := os.WriteFile(filepath.Join(dir, inst.ServiceUnit()), []byte("[Service]\nEnvironment=\"PORT=20001\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if env, ok := TransientEnvironment(dir, inst); !ok || !slices.Equal(env, []string{"PORT=20001"}) {
		t.Errorf("%q %v", env, ok)
	}
}
