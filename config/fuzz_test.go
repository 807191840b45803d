package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// The fuzz targets of this file run as ordinary tests on their seeds (and on
// testdata/fuzz) with every `go test`; `make fuzz` explores further.

// FuzzParse feeds arbitrary bytes to Parse as a tenement.toml. A file is
// either rejected with errors that each name the file, or accepted as a
// config that survives a round trip: written back as TOML and parsed again,
// it is the same config (defaults and validation are stable, nothing
// accepted depends on how it was spelled).
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(""))
	f.Add([]byte("[service.api]\ncommand = \"/bin/x\"\ncomand = \"y\"\n"))
	f.Add([]byte("[service.a]\ncommand = \"/bin/a '\"\n[instances]\na = [\"x\", \"x\", \"-y\"]\n"))
	f.Add([]byte("[service.a]\ncommand = \"/bin/a\"\nlisten = [\"tcp://127.0.1.0/24:7000-7099\", \"tcp://[::1]:7000\"]\n[service.b]\ncommand = \"/bin/b\"\nlisten = [\"tcp://127.0.1.9:7050\"]\n"))
	f.Add([]byte("[service.a]\ncommand = \"/bin/a\"\nsleep = \"freeze-then-stop\"\nidle_timeout = 5\nstop_after = 60\nworkdir = \"rel\"\nisolation = \"gvisor\"\n[settings]\ndomain = \"Example.COM.\"\n"))
	f.Add([]byte("[settings]\nport_range = [1, 2, 3]\nsocket_dir = \"rel\"\n[[service.a.mounts]]\nsource = \"/x\"\ndestination = \"/y\"\n"))
	if b, err := os.ReadFile("../examples/tenement.toml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config and an error: %v", err)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("Parse error is not a non-empty Errors: %T %v", err, err)
			}
			// Each problem needs some input to cause it: the error list
			// cannot grow faster than the file.
			if len(es) > len(data)+1 {
				t.Fatalf("%d errors for %d bytes of input", len(es), len(data))
			}
			for _, e := range es {
				if e.File != "fuzz.toml" || e.Msg == "" {
					t.Fatalf("error does not name the file or says nothing: %+v", e)
				}
				if !strings.HasPrefix(e.Error(), "fuzz.toml") {
					t.Fatalf("error %q does not start with the file name", e.Error())
				}
			}
			return
		}
		for name, svc := range c.Services {
			if err := CheckName("service name", name); err != nil {
				t.Fatalf("accepted a bad service name: %v", err)
			}
			if svc.Name != name {
				t.Fatalf("service %q carries name %q", name, svc.Name)
			}
		}
		for svc, ids := range c.Instances {
			if c.Services[svc] == nil {
				t.Fatalf("instances of undefined service %q accepted", svc)
			}
			for _, id := range ids {
				if err := CheckID("instance id", id); err != nil {
					t.Fatalf("accepted a bad instance id: %v", err)
				}
			}
		}
		out, err := toml.Marshal(c)
		if err != nil {
			t.Fatalf("accepted config cannot be written back: %v", err)
		}
		c2, err := Parse("fuzz.toml", out)
		if err != nil {
			t.Fatalf("accepted config, written back, is rejected: %v\n--- input\n%s\n--- written\n%s", err, data, out)
		}
		// Compared as written: an empty list and a missing one mean the same.
		out2, err := toml.Marshal(c2)
		if err != nil || string(out2) != string(out) || c2.Path != c.Path {
			t.Fatalf("config changed over a round trip (%v):\n--- first\n%s\n--- second\n%s", err, out, out2)
		}
	})
}

// FuzzCheckName checks that an accepted service name or instance id is a
// DNS label of lowercase letters, digits and '-' (what routing and unit
// names rely on), and that a rejection names what was checked.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"api", "prod-2", "-x", "x-", "", "A", "a_b", "a.b", "é", strings.Repeat("a", 63), strings.Repeat("a", 64), "a\x00b", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckName("instance id", s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "instance id") {
				t.Fatalf("error %q does not name what was checked", err)
			}
			return
		}
		if len(s) == 0 || len(s) > MaxNameLen {
			t.Fatalf("accepted %q of length %d", s, len(s))
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				t.Fatalf("accepted %q with byte %q", s, c)
			}
		}
		if s[0] == '-' || s[len(s)-1] == '-' {
			t.Fatalf("accepted %q with a leading or trailing '-'", s)
		}
	})
}

// FuzzParseListen checks that an accepted L4 listen address renders back to
// a string that parses to the same address, covers what it says, and that
// a rejection quotes the input without growing past a bound.
func FuzzParseListen(f *testing.F) {
	for _, s := range []string{
		"tcp://127.0.0.1:7000", "tcp://127.0.0.1:7000-7099", "tcp://127.0.1.0/24:7000",
		"tcp://127.0.1.0/24:7000-7999", "tcp://[::1]:7000", "tcp://[fd00::/120]:7000",
		"udp://127.0.0.1:53", "tcp://0.0.0.0:80", "tcp://127.0.0.1/31:80", "tcp://[::ffff:1.2.3.4]:80",
		"tcp://[fe80::1%eth0]:80", "tcp://127.0.0.1:0", "tcp://127.0.0.1:65536", "tcp://127.0.0.1:9-8",
		"tcp://::1:80", "tcp://[127.0.0.1]:80", "tcp://127.0.1.1/24:80", "tcp://127.0.0.1:80-80", "tcp://127.0.0.1:+80",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseListen(s)
		if err != nil {
			if l != (Listen{}) {
				t.Fatalf("ParseListen(%q) returned %+v with error %v", s, l, err)
			}
			if n := len(err.Error()); n > 8*len(s)+512 {
				t.Fatalf("error of %d bytes for %d bytes of input", n, len(s))
			}
			return
		}
		if l.Protocol != "tcp" || l.Port == 0 || (l.PortEnd != 0 && l.PortEnd <= l.Port) {
			t.Fatalf("ParseListen(%q) = %+v", s, l)
		}
		if l.Prefix.Masked() != l.Prefix || l.Prefix.Addr().Zone() != "" || l.Prefix.Addr().IsUnspecified() {
			t.Fatalf("ParseListen(%q) accepted prefix %s", s, l.Prefix)
		}
		if !l.Overlaps(l) {
			t.Fatalf("%s does not overlap itself", l)
		}
		back, err := ParseListen(l.String())
		if err != nil || back != l {
			t.Fatalf("ParseListen(%q) = %+v, renders %q, which parses to %+v, %v", s, l, l.String(), back, err)
		}
	})
}

// FuzzSplitCommand checks the shell-like splitting of a service's command:
// it never invents text (every word is made of input bytes, in total no more
// than the input) and quoting each word back yields the same words.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{"/bin/app --port {port}", `sh -c 'echo "hi there"'`, `a\ b "c\"d" 'e'`, `'`, `"`, `\`, "   ", "a\tb\nc", `""`, `"\\"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := SplitCommand(s)
		if err != nil {
			if words != nil {
				t.Fatalf("SplitCommand(%q) returned words and an error", s)
			}
			return
		}
		if len(words) == 0 {
			t.Fatalf("SplitCommand(%q) accepted with no words", s)
		}
		n := 0
		for _, w := range words {
			n += len(w)
		}
		if n > len(s) {
			t.Fatalf("SplitCommand(%q) made %d bytes of words from %d bytes", s, n, len(s))
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		again, err := SplitCommand(strings.Join(quoted, " "))
		if err != nil || !reflect.DeepEqual(again, words) {
			t.Fatalf("SplitCommand(%q) = %q; quoted back and split: %q, %v", s, words, again, err)
		}
	})
}
