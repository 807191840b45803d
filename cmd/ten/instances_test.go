package main

import (
	"strings"
	"testing"

	"github.com/tenhq/ten/apitype"
)

// ten spawn SERVICE:ID, and tenement's older ten spawn SERVICE --id ID.
func TestSpawnName(t *testing.T) {
	for _, c := range []struct{ arg, id, want, err string }{
		{"api:prod", "", "api:prod", ""},
		{"api", "prod", "api:prod", ""},
		{"api:prod", "x", "", "not both"},
		{"api", "", "api", ""}, // refused later by ParseInstance, with its message
	} {
		got, err := spawnName(c.arg, c.id)
		if got != c.want || (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("spawnName(%q, %q) = %q, %v; want %q, %q", c.arg, c.id, got, err, c.want, c.err)
		}
	}
}

func TestSplitAsleep(t *testing.T) {
	rows := []apitype.Row{
		{Instance: "web:a", State: apitype.StateRunning},
		{Instance: "web:b", State: apitype.StateSleeping},
		{Instance: "web:c", State: apitype.StateStarting},
		{Instance: "web:d", State: apitype.StateFrozen},
		{Instance: "web:e", State: apitype.StateFailed},
		{Instance: "web:f", State: apitype.StateRemote},
	}
	awake, asleep := splitAsleep(rows)
	var names []string
	for _, r := range awake {
		names = append(names, r.Instance)
	}
	if got := strings.Join(names, " "); got != "web:a web:c web:e web:f" || asleep != 2 {
		t.Errorf("awake %q, asleep %d; want web:a web:c web:e web:f and 2", got, asleep)
	}
}
