package config

import (
	"strings"
	"testing"
)

// A value of the wrong type is said in the config's terms, with the file,
// line and key, not in Go's type names.
func TestWrongTypeSaidPlainly(t *testing.T) {
	for in, want := range map[string]string{
		"[service.api]\ncommand = \"/bin/x\"\nidle_timeout = \"5\"\n":     `t.toml:3: service.api.idle_timeout: want a whole number, got a string`,
		"[service.api]\ncommand = \"/bin/x\"\nmemory_limit_mb = 1.5\n":    `t.toml:3: service.api.memory_limit_mb: want a whole number, got a number with a fraction`,
		"[service.api]\ncommand = \"/bin/x\"\nargs = \"x\"\n":             `t.toml:3: service.api.args: want an array of strings, got a string`,
		"[service.api]\ncommand = \"/bin/x\"\nstorage_persist = \"no\"\n": `t.toml:3: service.api.storage_persist: want true or false, got a string`,
		"[service.api]\ncommand = 5\n":                                    `t.toml:2: service.api.command: want a string, got a whole number`,
	} {
		_, err := Parse("t.toml", []byte(in))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "struct field") {
			t.Errorf("%q: %v; want %q", in, err, want)
		}
	}
}
