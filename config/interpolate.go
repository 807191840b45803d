package config

import (
	"fmt"
	"sort"
	"strings"
)

func sortStrings(s []string) { sort.Strings(s) }

// Vars are the values of tenement's placeholders for one instance.
type Vars struct {
	Name, ID, DataDir, Port, Socket string
}

// Expand replaces {name} {id} {data_dir} {port} {socket} in s.
func (v Vars) Expand(s string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	r := strings.NewReplacer("{name}", v.Name, "{id}", v.ID, "{data_dir}", v.DataDir, "{port}", v.Port, "{socket}", v.Socket)
	return r.Replace(s)
}

// SplitCommand splits a command line the way a POSIX shell splits words:
// whitespace separates, single quotes are literal, double quotes allow \" and \\,
// a backslash outside quotes escapes the next character.
func SplitCommand(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote in command %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote in command %q", s)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("command is empty")
	}
	return words, nil
}
