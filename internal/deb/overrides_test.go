package deb

import (
	"os"
	"strings"
	"testing"
)

func TestOverridesKeepWhatApplies(t *testing.T) {
	text := `# ten: a static PIE.
ten: shared-library-lacks-prerequisites [usr/bin/ten]
# the shim: static,
# not PIE.
ten: statically-linked-binary [usr/libexec/ten/ten-shim]
ten: shared-library-lacks-prerequisites [usr/libexec/ten/ten-shim]
ten: some-other-tag [usr/libexec/ten/ten-shim]
`
	// A static non-PIE shim: its shared-library override goes.
	got := string(Overrides([]byte(text), map[string]bool{"usr/bin/ten": true, "usr/libexec/ten/ten-shim": false}))
	want := `# ten: a static PIE.
ten: shared-library-lacks-prerequisites [usr/bin/ten]
# the shim: static,
# not PIE.
ten: statically-linked-binary [usr/libexec/ten/ten-shim]
ten: some-other-tag [usr/libexec/ten/ten-shim]
`
	if got != want {
		t.Errorf("non-PIE shim:\n%s\nwant:\n%s", got, want)
	}
	// A PIE shim (built without cgo): the static-binary override and its
	// comment go.
	got = string(Overrides([]byte(text), map[string]bool{"usr/bin/ten": true, "usr/libexec/ten/ten-shim": true}))
	if strings.Contains(got, "statically-linked-binary") || strings.Contains(got, "not PIE") ||
		!strings.Contains(got, "shared-library-lacks-prerequisites [usr/libexec/ten/ten-shim]") {
		t.Errorf("PIE shim:\n%s", got)
	}
}

func TestIsPIE(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := IsPIE(data); err != nil {
		t.Errorf("IsPIE of this test binary: %v", err)
	}
	if _, err := IsPIE([]byte("#!/bin/sh\n")); err == nil {
		t.Error("IsPIE of a script: no error")
	}
}
