package system

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// GET /api/instances/{id}/storage: bytes in the instance's data directory
// ({data_dir}/{name}/{id}: the harness sets data_dir) against storage_quota_mb.
func TestStorageEndpoint(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"

[service.free]
command = "ECHO --mode activation"
activation = "socket"
isolation = "process"

[instances]
api = ["prod"]
free = ["prod"]
`)
	s.mustGet("prod.api.localhost", "/write?name=blob&bytes=1048576")
	s.mustGet("prod.free.localhost", "/write?name=blob&bytes=4096")
	var st struct {
		Instance   string  `json:"instance"`
		Path       string  `json:"path"`
		Bytes      int64   `json:"bytes"`
		DiskBytes  int64   `json:"disk_bytes"`
		Files      int64   `json:"files"`
		QuotaBytes int64   `json:"quota_bytes"`
		UsageRatio float64 `json:"usage_ratio"`
	}
	code, body, _ := s.apiCall("GET", "/api/instances/api:prod/storage", s.adminToken(), "")
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("storage: %d %s", code, body)
	}
	if st.Instance != "api:prod" || st.Path != filepath.Join(s.dir, "data", "api", "prod") || st.Bytes < 1<<20 || st.Bytes > 1<<20+64<<10 || st.Files != 1 || st.QuotaBytes != 0 {
		t.Errorf("storage api:prod: %+v", st)
	}
	code, body, _ = s.apiCall("GET", "/api/instances/free:prod/storage", s.adminToken(), "")
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Path != filepath.Join(s.dir, "data", "free", "prod") || st.Bytes != 4096 {
		t.Errorf("storage free:prod: %d %s", code, body)
	}
	code, body, _ = s.apiCall("GET", "/api/instances/api:nothere/storage", s.adminToken(), "")
	if code != 404 || !strings.Contains(errorOf(t, "unknown instance", body), "no such instance") {
		t.Errorf("storage of an unknown instance: %d %s", code, body)
	}
}

// storage_quota_mb is reported with the usage ratio (the quota itself is
// enforced by the mount ten makes; this checks the numbers the API gives).
func TestStorageQuotaReported(t *testing.T) {
	s := startTen(t, `
[service.api]
command = "ECHO --mode activation"
activation = "socket"
storage_quota_mb = 8

[instances]
api = ["prod"]
`)
	s.mustGet("prod.api.localhost", "/write?name=blob&bytes=2097152")
	var st struct {
		Bytes      int64   `json:"bytes"`
		QuotaBytes int64   `json:"quota_bytes"`
		UsageRatio float64 `json:"usage_ratio"`
	}
	code, body, _ := s.apiCall("GET", "/api/instances/api:prod/storage", s.adminToken(), "")
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("storage: %d %s", code, body)
	}
	if st.QuotaBytes != 8<<20 || st.Bytes < 2<<20 || st.UsageRatio < 0.25 || st.UsageRatio > 0.3 {
		t.Errorf("storage with quota: %+v", st)
	}
}
