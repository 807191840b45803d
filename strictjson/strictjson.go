// Package strictjson decodes the JSON bodies of ten's API strictly: one
// object, no unknown, repeated or null fields, nothing after it, and errors
// that name the field and never echo more than a short prefix of what was
// sent. The API's handlers read every body through it (after bounding its
// size); it is fuzzed (FuzzDecodeStrict).
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"
)

// ErrBadInput is what every error of DecodeStrict wraps: the client sent
// something wrong (400 for the API).
var ErrBadInput = errors.New("bad input")

// MaxErrorLen bounds the error text of an answer, so that no input a client
// sent is echoed back unbounded (ClipError).
const MaxErrorLen = 1024

// DecodeStrict decodes one JSON object into v, which must point to a
// struct, and refuses what a lenient decoder would let through: an empty
// body, anything but an object, a field v does not have (a typo such as
// "tenent" must not silently mean "no tenant"), a null value (null would
// leave the field at its zero value, which may mean something: no tenant is
// an admin token), a field given twice, and anything after the object.
// Errors name the field and never quote more than a short prefix of what
// was sent.
func DecodeStrict(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("%w: the body is empty", ErrBadInput)
	}
	// Pass 1: the shape, field by field.
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %s", ErrBadInput, jsonErr(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%w: the body must be a JSON object, not %s", ErrBadInput, kindOf(tok))
	}
	fields := knownFields(v)
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %s", ErrBadInput, jsonErr(err))
		}
		name, _ := tok.(string)
		if _, ok := fields[name]; !ok {
			return fmt.Errorf("%w: unknown field %s (known: %s)", ErrBadInput, clip(name), strings.Join(sortedKeys(fields), ", "))
		}
		if seen[name] {
			return fmt.Errorf("%w: field %q is given twice", ErrBadInput, name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("%w: field %q: %s", ErrBadInput, name, jsonErr(err))
		}
		if string(raw) == "null" {
			return fmt.Errorf("%w: field %q is null; leave it out or give it a value", ErrBadInput, name)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return fmt.Errorf("%w: %s", ErrBadInput, jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: unexpected data after the JSON object at byte %d", ErrBadInput, dec.InputOffset())
	}
	// Pass 2: the values, with Go's own type checks.
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s", ErrBadInput, jsonErr(err))
	}
	return nil
}

// knownFields returns the JSON names of the exported fields of the struct v
// points to, embedded structs included. json matches names
// case-insensitively; ten does not: a field must be spelt as documented.
func knownFields(v any) map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return out
	}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			out[name] = true
		}
	}
	walk(t)
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// jsonErr turns a decoding error into a message that names the field and
// the wanted type, without quoting the input.
func jsonErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(the body)"
		}
		return fmt.Sprintf("field %s: want %s, got %s", clip(field), typeWord(te.Type), clipValue(te.Value))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends too early"
	}
	return clip(strings.TrimPrefix(err.Error(), "json: "))
}

func typeWord(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number in range"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number from 0 in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

func kindOf(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "an array"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "that"
}

// clip quotes s, cut to its first 40 bytes.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return fmt.Sprintf("%q", s)
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}

// ClipError bounds an error text sent to a client (MaxErrorLen).
func ClipError(msg string) string {
	if len(msg) <= MaxErrorLen {
		return msg
	}
	cut := MaxErrorLen
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + fmt.Sprintf("… (%d bytes cut)", len(msg)-cut)
}

// clipValue shortens json's description of a value ("number 1e999").
func clipValue(v string) string {
	if kind, num, ok := strings.Cut(v, " "); ok {
		if len(num) > 24 {
			num = num[:24] + "…"
		}
		return kind + " " + num
	}
	return v
}
