package apitype

import (
	"encoding/json"
	"testing"
)

// A row in JSON has tenement's idle_secs and storage_used_bytes beside
// ten's names, and reads back as the same row.
func TestRowJSON(t *testing.T) {
	r := Row{Instance: "api:prod", ID: "api:prod", State: StateRunning, UptimeSec: 12.5, UptimeSecs: 12, IdleSec: 3.9, Weight: 100, StorageBytes: 42, StorageQuotaBytes: 100}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["idle_secs"] != float64(3) || m["storage_used_bytes"] != float64(42) || m["idle_seconds"] != 3.9 || m["storage_bytes"] != float64(42) || m["uptime_secs"] != float64(12) {
		t.Errorf("JSON %s", b)
	}
	var back Row
	if err := json.Unmarshal(b, &back); err != nil || back != r {
		t.Errorf("read back %+v, %v; want %+v", back, err, r)
	}
	rows, _ := json.Marshal([]Row{r})
	if !json.Valid(rows) || len(rows) < len(b) {
		t.Errorf("a list of rows: %s", rows)
	}
}
