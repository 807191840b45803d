package config

import (
	"fmt"
	"reflect"
	"strings"
)

// unknownKeyMsg is the error for a key of the file that no table of Config
// has: "unknown key", with tenement's older spellings named for what they
// are now and a near miss of a known key suggested.
func unknownKeyMsg(key []string) string {
	const msg = "unknown key"
	switch {
	case len(key) >= 1 && key[0] == "process":
		name := "NAME"
		if len(key) >= 2 {
			name = key[1]
		}
		return fmt.Sprintf("%s: tenement's older name for service tables; rename [process.%s] to [service.%s]", msg, name, name)
	case len(key) == 3 && key[0] == "service" && key[2] == "runtime":
		return msg + ": tenement's older name for isolation; write isolation = \"...\" instead"
	case len(key) == 3 && key[0] == "service" && key[2] == "port":
		return msg + ": tenement's older fixed TCP port of a service; remove it: ten gives each instance a PORT of its own and routes to it by Host (listen = [\"tcp://ADDR:PORT\"] gives a service a TCP address of its own)"
	}
	if near := nearKey(key); near != "" {
		return fmt.Sprintf("%s; did you mean %s?", msg, near)
	}
	return msg
}

// nearKey is the known key within two edits of the first element of key
// that no table has ("" when none is): idel_timeout, servce.
func nearKey(key []string) string {
	t := reflect.TypeOf(Config{})
	for _, k := range key {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := fieldByTag(t, k)
			if !ok {
				return nearField(t, k)
			}
			t = f.Type
		default:
			return ""
		}
	}
	return ""
}

// nearField is the key of struct type t closest to k, within two edits.
func nearField(t reflect.Type, k string) string {
	best, bestD := "", 3
	for i := range t.NumField() {
		name := tomlName(t.Field(i))
		if name == "" {
			continue
		}
		if d := editDistance(k, name, bestD); d < bestD {
			best, bestD = name, d
		}
	}
	return best
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); tomlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// tomlName is the key a field is decoded from ("" for none).
func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// editDistance is the Levenshtein distance of a and b, or limit when it is
// at least limit (keys are short; the limit stops long comparisons early).
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}
