package systemd

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tenhq/ten/units"
)

// TransientDir is where systemd keeps the unit files of the system
// manager's transient units: every property a StartTransientUnit call set,
// written as unit file lines.
const TransientDir = "/run/systemd/transient"

// TransientEnvironment reads the instance's service's Environment= from its
// transient unit file in dir (TransientDir): what Environment would read
// over D-Bus, without a round trip into systemd. ok is false when the file
// is missing or a line is not as systemd writes it; the caller then asks
// systemd.
func TransientEnvironment(dir string, inst units.Instance) (env []string, ok bool) {
	data, err := os.ReadFile(filepath.Join(dir, inst.ServiceUnit()))
	if err != nil {
		return nil, false
	}
	return parseTransientEnv(data)
}

// parseTransientEnv returns the Environment= assignments of a unit file's
// [Service] sections, as systemd 252 writes them for a transient unit:
// each assignment in double quotes, C-escaped, with % doubled
// (unit_concat_strv with UNIT_ESCAPE_SPECIFIERS|UNIT_ESCAPE_C). An empty
// Environment= resets the list, as in any unit file.
func parseTransientEnv(data []byte) ([]string, bool) {
	var env []string
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			section = line
			continue
		case strings.HasSuffix(line, "\\"):
			return nil, false // a continued line: not what systemd writes
		}
		v, found := strings.CutPrefix(line, "Environment=")
		if !found || section != "[Service]" {
			continue
		}
		if strings.TrimSpace(v) == "" {
			env = nil
			continue
		}
		words, err := unquoteWords(v)
		if err != nil {
			return nil, false
		}
		env = append(env, words...)
	}
	if sc.Err() != nil {
		return nil, false
	}
	return env, true
}

var errQuoting = errors.New("not a quoted, C-escaped word")

// unquoteWords splits s into its double-quoted, C-escaped words and undoes
// the quoting, the escapes and the doubled %.
func unquoteWords(s string) ([]string, error) {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return out, nil
		}
		if s[0] != '"' {
			return nil, errQuoting
		}
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] != '\\' {
				b.WriteByte(s[i])
				continue
			}
			if strings.HasPrefix(s[i:], `\'`) {
				b.WriteByte('\'')
				i++
				continue
			}
			// strconv.UnquoteChar knows the other escapes systemd's
			// cescape writes (\a \b \f \n \r \t \v \\ \" and \xNN for
			// every byte below space or from 127 up).
			r, multibyte, tail, err := strconv.UnquoteChar(s[i:], '"')
			if err != nil {
				return nil, errQuoting
			}
			if multibyte {
				b.WriteRune(r)
			} else {
				b.WriteByte(byte(r)) // \xNN is a byte, not a code point
			}
			i = len(s) - len(tail) - 1
		}
		if i >= len(s) {
			return nil, errQuoting
		}
		out = append(out, strings.ReplaceAll(b.String(), "%%", "%"))
		s = s[i+1:]
	}
}
