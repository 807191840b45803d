package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tenhq/ten/systemd/journal"
)

// A line is tenement's "[OUT] service:id message" with the date in front,
// and nothing an app writes can make it two lines, take another
// instance's name or send the terminal an escape sequence.
func TestEntryLine(t *testing.T) {
	at := time.Date(2026, 12, 7, 22, 40, 1, 123e6, time.Local)
	for _, c := range []struct {
		stream, msg, want string
	}{
		{journal.StreamStdout, "hello world", "[OUT] api:prod hello world"},
		{journal.StreamStderr, "oops", "[ERR] api:prod oops"},
		{journal.StreamSystemd, "Started tenement-api@prod.service.", "[SYS] api:prod Started tenement-api@prod.service."},
		{journal.StreamStdout, "tab\tkept, ünïcode kept", "[OUT] api:prod tab\tkept, ünïcode kept"},
		{journal.StreamStdout, "ok\n2026-12-07 22:40:02.000 [OUT] billing:prod forged", `[OUT] api:prod ok\n2026-12-07 22:40:02.000 [OUT] billing:prod forged`},
		{journal.StreamStdout, "hidden\rshown", `[OUT] api:prod hidden\rshown`},
		{journal.StreamStdout, "\x1b]0;title\x07\x1b[2Jcleared", `[OUT] api:prod \x1b]0;title\x07\x1b[2Jcleared`},
		{journal.StreamStdout, "a\u202edcba\u2066b", `[OUT] api:prod a\u202edcba\u2066b`},
		{journal.StreamStdout, "bad \xff\xfe utf8, real \ufffd, C1 \u0085", `[OUT] api:prod bad \xff\xfe utf8, real \ufffd, C1 \x85`},
	} {
		got := entryLine(journal.Entry{Time: at, Instance: "api:prod", Stream: c.stream, Message: c.msg})
		want := "2026-12-07 22:40:01.123 " + c.want
		if got != want {
			t.Errorf("message %q:\n got %s\nwant %s", c.msg, got, want)
		}
		if strings.ContainsAny(got, "\n\r\x1b") {
			t.Errorf("message %q printed a control character: %q", c.msg, got)
		}
	}
}
