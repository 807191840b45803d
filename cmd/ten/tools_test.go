package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuessCommand: ten init recognises the kinds of app tenement's init
// does: Python, Node, Go and Rust.
func TestGuessCommand(t *testing.T) {
	for _, tc := range []struct {
		files map[string]string
		want  string
	}{
		{map[string]string{"main.py": "print(1)"}, "/usr/bin/python3 main.py"},
		{map[string]string{"package.json": `{"scripts":{"start":"node s.js"}}`}, "/usr/bin/env npm start"},
		{map[string]string{"go.mod": "module x\n"}, "DIR/app"},
		{map[string]string{"Cargo.toml": "[package]\nname = \"notes-api\"\nversion = \"0.1.0\"\n"}, "DIR/target/release/notes-api"},
		{map[string]string{"Cargo.toml": "[workspace]\nmembers = [\"a\"]\n"}, "DIR/target/release/app"},
	} {
		dir := t.TempDir()
		for f, body := range tc.files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, why := guessCommand(dir, "app")
		if want := strings.Replace(tc.want, "DIR", dir, 1); got != want {
			t.Errorf("files %v: command %q (%s), want %q", tc.files, got, why, want)
		}
	}
}
