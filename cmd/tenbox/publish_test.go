package main

import "testing"

func TestParsePublish(t *testing.T) {
	for in, want := range map[string]publish{
		"8080:80":             {listen: "127.0.0.1:8080", target: "127.0.0.1:80"},
		"127.0.0.1:8080:8080": {listen: "127.0.0.1:8080", target: "127.0.0.1:8080"},
		"0.0.0.0:9000:8080":   {listen: "0.0.0.0:9000", target: "127.0.0.1:8080"},
		"[::1]:8080:8080":     {listen: "[::1]:8080", target: "127.0.0.1:8080"},
	} {
		got, err := parsePublish(in)
		if err != nil || got != want {
			t.Errorf("parsePublish(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"8080", "a:8080:80", "1:2:3:4", "8080:0", "8080:70000", "localhost:1:2", "[::1]:8080"} {
		if _, err := parsePublish(in); err == nil {
			t.Errorf("parsePublish(%q): no error", in)
		}
	}
}
