package system

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestArgsReachTheAppAsWritten: tenement hands an app its args (and the
// words of its command) as written. systemd would expand "$NAME" and
// "${NAME}" in them and turn "$$" into "$" at every start; ten escapes
// them, so a password, a regular expression or a shell snippet with its
// own variables arrives intact, through the shim too (PORT app).
func TestArgsReachTheAppAsWritten(t *testing.T) {
	s := startTen(t, `
[service.lit]
command = "ECHO"
args = ["--mode", "port", "--", "pa$$word", "$NOPE", "a${NOPE}b", "$HOME", "x$HOME", "100%", "%n", "{id}"]

[service.split]
command = "ECHO --mode port -- 'a $b' ${c} $$"

[instances]
lit = ["a"]
split = ["a"]
`)
	for host, want := range map[string][]string{
		"a.lit.localhost":   {"pa$$word", "$NOPE", "a${NOPE}b", "$HOME", "x$HOME", "100%", "%n", "a"},
		"a.split.localhost": {"a $b", "${c}", "$$"},
	} {
		var in struct{ Args []string }
		body := s.mustGet(host, "/info")
		if err := json.Unmarshal([]byte(body), &in); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(in.Args, want) {
			t.Errorf("%s: the app was given %q, want %q", host, in.Args, want)
		}
	}
}
