package system

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestIsolationSwitch: an operator moves a service between isolation =
// "process" and the default namespace, back and forth, and the instance of
// the same name starts each time with the files it wrote before: the state
// directory a root service left behind is handed to the instance's
// DynamicUser, not a reason for systemd to fail the start (238
// STATE_DIRECTORY). Both with data_dir and with systemd's state directories.
func TestIsolationSwitch(t *testing.T) {
	for _, layout := range []string{"data_dir", "state directory"} {
		t.Run(layout, func(t *testing.T) {
			body := `
[service.sw]
command = "ECHO"
args = ["--mode", "port"]
isolation = "process"
`
			if layout == "state directory" {
				body = defaultDataDir + body
			}
			s := startTen(t, body)
			dataDir := filepath.Join(s.dir, "data", "sw", "a")
			if layout == "state directory" {
				dataDir = "/var/lib/tenement/sw/a"
			}
			var written []string
			for i, iso := range []string{"process", "namespace", "process", "namespace"} {
				if i > 0 {
					// The operator edits the config and restarts ten.
					s.kill()
					cfg, err := os.ReadFile(s.config)
					if err != nil {
						t.Fatal(err)
					}
					cfg = regexp.MustCompile(`isolation = "[a-z]+"`).ReplaceAll(cfg, []byte(`isolation = "`+iso+`"`))
					if err := os.WriteFile(s.config, cfg, 0o644); err != nil {
						t.Fatal(err)
					}
					s.start()
				}
				if out, err := s.ten("spawn", "sw:a"); err != nil {
					t.Fatalf("step %d (isolation %s): spawn sw:a: %v\n%s\njournal:\n%s", i, iso, err, out, journal(t, "tenement-sw@a.service"))
				}
				name := fmt.Sprintf("f%d", i)
				s.mustGet("a.sw.localhost", "/write?name="+name+"&bytes=10")
				written = append(written, name)
				for _, f := range written {
					if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
						t.Errorf("step %d (isolation %s): %s written earlier is gone: %v", i, iso, f, err)
					}
				}
				s.mustTen("stop", "sw:a")
			}
		})
	}
}
