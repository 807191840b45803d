package main

import (
	"strings"
	"testing"
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
