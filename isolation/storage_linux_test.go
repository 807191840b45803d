package isolation

import "testing"

func TestMountRoot(t *testing.T) {
	if !mountRoot("/proc") {
		t.Error("mountRoot(/proc) = false")
	}
	if dir := t.TempDir(); mountRoot(dir) {
		t.Errorf("mountRoot(%s) = true for a plain directory", dir)
	}
	if mountRoot("/nonexistent/ten") {
		t.Error("mountRoot of a missing path = true")
	}
}
