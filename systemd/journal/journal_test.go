package journal

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tenhq/ten/units"
)

func TestParseEntry(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		ok         bool
		want       Entry
	}{
		{"stdout", `{"__REALTIME_TIMESTAMP":"1795653264845122","_SYSTEMD_UNIT":"tenement-api@prod.service","PRIORITY":"6","MESSAGE":"out-line","_PID":"30","__CURSOR":"s=1"}`,
			true, Entry{Time: time.UnixMicro(1795653264845122).UTC(), Instance: "api:prod", Process: "api", InstanceID: "prod", Unit: "tenement-api@prod.service", Stream: StreamStdout, Priority: 6, PID: 30, Message: "out-line", Cursor: "s=1"}},
		{"stderr", `{"_SYSTEMD_UNIT":"tenement-api@prod.service","PRIORITY":"3","MESSAGE":"err-line"}`,
			true, Entry{Instance: "api:prod", Process: "api", InstanceID: "prod", Unit: "tenement-api@prod.service", Stream: StreamStderr, Priority: 3, Message: "err-line"}},
		// journald writes non-UTF-8 or binary messages as arrays of bytes.
		{"bytes", `{"_SYSTEMD_UNIT":"tenement-api@prod.service","PRIORITY":"6","MESSAGE":[104,105,255,10]}`,
			true, Entry{Instance: "api:prod", Process: "api", InstanceID: "prod", Unit: "tenement-api@prod.service", Stream: StreamStdout, Priority: 6, Message: "hi\xff"}},
		// A field that repeats is an array of values.
		{"repeated", `{"_SYSTEMD_UNIT":"tenement-api@prod.service","MESSAGE":["one","two"]}`,
			true, Entry{Instance: "api:prod", Process: "api", InstanceID: "prod", Unit: "tenement-api@prod.service", Stream: StreamStdout, Priority: 6, Message: "one"}},
		{"systemd about the unit", `{"_SYSTEMD_UNIT":"init.scope","UNIT":"tenement-web@x.service","PRIORITY":"5","MESSAGE":"tenement-web@x.service: Main process exited, code=killed, status=9/KILL","_PID":"1"}`,
			true, Entry{Instance: "web:x", Process: "web", InstanceID: "x", Unit: "tenement-web@x.service", Stream: StreamSystemd, Priority: 5, PID: 1, Message: "tenement-web@x.service: Main process exited, code=killed, status=9/KILL"}},
		{"systemd about the unit, OBJECT_", `{"_SYSTEMD_UNIT":"init.scope","OBJECT_SYSTEMD_UNIT":"tenement-web@x.service","MESSAGE":"m","_PID":"1"}`,
			true, Entry{Instance: "web:x", Process: "web", InstanceID: "x", Unit: "tenement-web@x.service", Stream: StreamSystemd, Priority: 6, PID: 1, Message: "m"}},
		{"other unit", `{"_SYSTEMD_UNIT":"cron.service","MESSAGE":"x"}`, false, Entry{}},
		// Forgeries: fields without "_" are the sender's word.
		{"forged UNIT from another unit", `{"_SYSTEMD_UNIT":"cron.service","_PID":"77","UNIT":"tenement-web@x.service","MESSAGE":"fake"}`, false, Entry{}},
		{"forged UNIT, sender gone", `{"_PID":"77","UNIT":"tenement-web@x.service","MESSAGE":"fake"}`, false, Entry{}},
		{"forged OBJECT_SYSTEMD_UNIT", `{"_PID":"77","_SYSTEMD_UNIT":"user@0.service","OBJECT_SYSTEMD_UNIT":"tenement-web@x.service","MESSAGE":"fake"}`, false, Entry{}},
		{"forged _PID in the payload is journald's, not the sender's", `{"_PID":"77","UNIT":"tenement-web@x.service","PID":"1","MESSAGE":"fake"}`, false, Entry{}},
		{"another instance claiming a neighbour", `{"_SYSTEMD_UNIT":"tenement-api@evil.service","_PID":"9","UNIT":"tenement-web@x.service","MESSAGE":"mine"}`,
			true, Entry{Instance: "api:evil", Process: "api", InstanceID: "evil", Unit: "tenement-api@evil.service", Stream: StreamStdout, Priority: 6, PID: 9, Message: "mine"}},
		{"ten's socket unit", `{"_SYSTEMD_UNIT":"init.scope","UNIT":"tenement-api@prod.socket","MESSAGE":"Listening"}`, false, Entry{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok, err := ParseEntry([]byte(tc.line))
			if err != nil || ok != tc.ok || e != tc.want {
				t.Errorf("ParseEntry = %+v, %v, %v; want %+v, %v", e, ok, err, tc.want, tc.ok)
			}
		})
	}
	if _, _, err := ParseEntry([]byte("{not json")); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestJournalArgs(t *testing.T) {
	since := time.Unix(1700000000, 123456789)
	got := strings.Join(journalArgs(Query{Instance: units.Instance{Service: "api", ID: "prod"}, Search: "a.b(c", Since: since, Stream: StreamStderr}, 50, false, true, true), " ")
	want := "--no-pager --output=json --all --unit=tenement-api@prod.service --lines=50 --since=@1700000000.123456 --priority=0..3 --grep=a\\.b\\(c"
	if got != want {
		t.Errorf("one instance:\n got %s\nwant %s", got, want)
	}
	got = strings.Join(journalArgs(Query{Tenant: "acme", Stream: StreamStdout, Search: "x"}, -1, true, true, false), " ")
	want = "--no-pager --output=json --all --unit=tenement-*@acme.service --follow --lines=all --priority=4..7"
	if got != want {
		t.Errorf("tenant, follow, search in Go:\n got %s\nwant %s", got, want)
	}
	got = strings.Join(journalArgs(Query{}, 0, true, false, true), " ")
	if got != "--no-pager --output=json --all --follow --lines=0" {
		t.Errorf("follow everything: %s", got)
	}
}

func TestQueryScope(t *testing.T) {
	q := Query{Tenant: "acme"}
	if !q.wants(units.Instance{Service: "api", ID: "acme"}) || q.wants(units.Instance{Service: "api", ID: "other"}) {
		t.Error("tenant scope")
	}
	q = Query{Instance: units.Instance{Service: "api", ID: "acme"}}
	if q.wants(units.Instance{Service: "web", ID: "acme"}) {
		t.Error("instance scope")
	}
	if err := (Query{Tenant: "acme", Instance: units.Instance{Service: "api", ID: "x"}}).Validate(); err == nil {
		t.Error("instance outside the tenant accepted")
	}
	if err := (Query{Stream: "both"}).Validate(); err == nil {
		t.Error("bad stream accepted")
	}
}

func TestMatcher(t *testing.T) {
	m := matcher("hello")
	if !m("say HELLO there") || m("help") {
		t.Error("lower-case search is case-insensitive")
	}
	m = matcher("Hello")
	if m("hello") || !m("Hello") {
		t.Error("search with upper case is case-sensitive")
	}
}

// A tenant can send a message of many MiB over journald's native protocol:
// one entry, its message and a whole read are bounded.
func TestReadBounds(t *testing.T) {
	huge := strings.Repeat("x", 3*MaxEntryBytes)
	in := "short\n" + huge + "\nafter\n" + "tail"
	rd := bufio.NewReaderSize(strings.NewReader(in), 4096)
	var got []string
	for {
		line, err := readLine(rd, MaxEntryBytes)
		if line != nil {
			got = append(got, string(line))
		}
		if err != nil {
			break
		}
	}
	if want := []string{"short\n", "after\n", "tail"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines %q, want %q (the long one skipped)", got, want)
	}

	msg := strings.Repeat("é", MaxMessageBytes) // two bytes each
	e, ok, err := ParseEntry([]byte(`{"_SYSTEMD_UNIT":"tenement-api@prod.service","MESSAGE":"` + msg + `"}`))
	if err != nil || !ok || len(e.Message) > MaxMessageBytes || !strings.HasSuffix(e.Message, "…") || !utf8.ValidString(e.Message) {
		t.Errorf("a message of %d bytes came back as %d bytes (ok %v, err %v)", len(msg), len(e.Message), ok, err)
	}

	r := newest{n: 10000, max: MaxReadBytes}
	for range 10000 {
		r.add(Entry{Message: strings.Repeat("m", MaxMessageBytes), Cursor: "c"})
	}
	if r.size > MaxReadBytes || len(r.entries) == 0 || len(r.entries) > MaxReadBytes/MaxMessageBytes {
		t.Errorf("10,000 entries of 64 KiB kept %d entries, %d bytes", len(r.entries), r.size)
	}
	r = newest{n: 3, max: MaxReadBytes}
	for i := range 5 {
		r.add(Entry{Cursor: strconv.Itoa(i)})
	}
	if len(r.entries) != 3 || r.entries[0].Cursor != "2" || r.entries[2].Cursor != "4" {
		t.Errorf("newest 3 of 5: %+v", r.entries)
	}
}

// fakeJournalctl puts a journalctl first on PATH that prints entries (lines
// of JSON, oldest first) as systemd 252's does: --grep keeps the lines with
// the text; --lines=N keeps the newest N, printed newest first with --grep,
// and the oldest N with --since.
func fakeJournalctl(t *testing.T, entries []string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "entries"), []byte(strings.Join(entries, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
n=all since= pat=
for a in "$@"; do
	case "$a" in
	--lines=*) n=${a#--lines=} ;;
	--since=*) since=1 ;;
	--grep=*) pat=${a#--grep=} ;;
	esac
done
cd "` + dir + `"
if [ -n "$pat" ]; then grep -F -- "$pat" entries > sel || true; else cp entries sel; fi
if [ "$n" = all ]; then cat sel
elif [ -n "$since" ]; then head -n "$n" sel
elif [ -n "$pat" ]; then tail -n "$n" sel | tac
else tail -n "$n" sel
fi
`
	if err := os.WriteFile(filepath.Join(dir, "journalctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":/usr/bin:/bin")
}

// appLine is a journal entry of the app of api:prod, at second i.
func appLine(i int, msg string) string {
	return `{"__REALTIME_TIMESTAMP":"170000000` + strconv.Itoa(i) + `000000","_SYSTEMD_UNIT":"tenement-api@prod.service","PRIORITY":"6","MESSAGE":"` + msg + `","__CURSOR":"c` + strconv.Itoa(i) + `"}`
}

// messages runs q against the fake journalctl (which can --grep).
func messages(t *testing.T, q Query) []string {
	t.Helper()
	var got []string
	if err := readJournal(context.Background(), q, true, func(e Entry) error {
		got = append(got, e.Message)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSearchOldestFirst: a search returns the newest matches oldest first
// (the API's order, and what `ten logs` prints), though journalctl 252
// prints --grep with --lines newest first.
func TestSearchOldestFirst(t *testing.T) {
	fakeJournalctl(t, []string{appLine(1, "GET /r1"), appLine(2, "POST /x"), appLine(3, "GET /r2"), appLine(4, "GET /r3")})
	q := Query{Instance: units.Instance{Service: "api", ID: "prod"}, Search: "GET", Limit: 2}
	if got, want := messages(t, q), []string{"GET /r2", "GET /r3"}; !slices.Equal(got, want) {
		t.Errorf("search GET, limit 2: %q, want %q", got, want)
	}
}

// TestSinceKeepsTheNewest: with a time window, the limit keeps the newest
// entries of the window, as without one; journalctl's --lines counts from
// --since (the oldest) when both are given.
func TestSinceKeepsTheNewest(t *testing.T) {
	fakeJournalctl(t, []string{appLine(1, "r1"), appLine(2, "r2"), appLine(3, "r3"), appLine(4, "r4")})
	for _, since := range []time.Time{{}, time.Unix(1600000000, 0)} {
		q := Query{Instance: units.Instance{Service: "api", ID: "prod"}, Since: since, Limit: 2}
		if got, want := messages(t, q), []string{"r3", "r4"}; !slices.Equal(got, want) {
			t.Errorf("since %v, limit 2: %q, want %q (the newest, oldest first)", since, got, want)
		}
	}
}

// TestLevelLimitCountsOnlyTheLevel: --level stdout --limit 2 gives the two
// newest stdout lines even when the newest entries are systemd's own lines
// about the unit (which journalctl's --priority cannot tell apart and
// --lines counts).
func TestLevelLimitCountsOnlyTheLevel(t *testing.T) {
	entries := []string{appLine(1, "r1"), appLine(2, "r2"), appLine(3, "r3"), appLine(4, "r4")}
	for i := 5; i <= 7; i++ {
		entries = append(entries, `{"__REALTIME_TIMESTAMP":"170000000`+strconv.Itoa(i)+`000000","_SYSTEMD_UNIT":"init.scope","_PID":"1","UNIT":"tenement-api@prod.service","PRIORITY":"6","MESSAGE":"Started","__CURSOR":"c`+strconv.Itoa(i)+`"}`)
	}
	fakeJournalctl(t, entries)
	q := Query{Instance: units.Instance{Service: "api", ID: "prod"}, Stream: StreamStdout, Limit: 2}
	if got, want := messages(t, q), []string{"r3", "r4"}; !slices.Equal(got, want) {
		t.Errorf("stdout, limit 2: %q, want %q", got, want)
	}
}

// An entry in JSON has ten's fields and tenement's timestamp (Unix ms) and
// level, and reads back as the same entry.
func TestEntryJSON(t *testing.T) {
	e := Entry{Time: time.UnixMicro(1795653264845122).UTC(), Instance: "api:prod", Process: "api", InstanceID: "prod",
		Unit: "tenement-api@prod.service", Stream: StreamStderr, Priority: 3, PID: 30, Message: "boom", Cursor: "s=1"}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["timestamp"] != float64(1795653264845) || m["level"] != "stderr" || m["stream"] != "stderr" || m["instance_id"] != "prod" || m["process"] != "api" || m["message"] != "boom" {
		t.Errorf("JSON %s", b)
	}
	var back Entry
	if err := json.Unmarshal(b, &back); err != nil || back != e {
		t.Errorf("read back %+v, %v; want %+v", back, err, e)
	}
	if b, _ := json.Marshal(Entry{Message: "x"}); !strings.Contains(string(b), `"timestamp":0`) {
		t.Errorf("an entry without a time: %s", b)
	}
}
