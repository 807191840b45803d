package journal

import (
	"testing"

	"github.com/tenhq/ten/units"
)

// FuzzParseEntry feeds arbitrary lines to ParseEntry as journalctl output
// (a tenant writes the messages; the rest is journald's). An entry is
// returned only for a service unit of ten's, with an instance that parses,
// a known stream, and no field longer than the line it came from.
func FuzzParseEntry(f *testing.F) {
	for _, s := range []string{
		`{"__REALTIME_TIMESTAMP":"1795653264845122","_SYSTEMD_UNIT":"tenement-api@prod.service","PRIORITY":"6","MESSAGE":"out-line","_PID":"30","__CURSOR":"s=1"}`,
		`{"_SYSTEMD_UNIT":"tenement-api@prod.service","PRIORITY":"3","MESSAGE":[104,105,255,10]}`,
		`{"_SYSTEMD_UNIT":"tenement-api@prod.service","MESSAGE":["one","two"]}`,
		`{"_SYSTEMD_UNIT":"init.scope","UNIT":"tenement-web@x.service","PRIORITY":"5","MESSAGE":"exited","_PID":"1"}`,
		`{"_SYSTEMD_UNIT":"init.scope","OBJECT_SYSTEMD_UNIT":"tenement-web@x.service","MESSAGE":[[1,2],[3]]}`,
		`{"_SYSTEMD_UNIT":"cron.service","MESSAGE":"x"}`,
		`{"_SYSTEMD_UNIT":["tenement-api@prod.service"],"MESSAGE":null,"PRIORITY":"-9999999999999999999"}`,
		`{"_SYSTEMD_UNIT":"tenement-api@prod.service","MESSAGE":[999999,-1],"__REALTIME_TIMESTAMP":"9223372036854775807"}`,
		`{not json`, `null`, `[]`, `""`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, ok, err := ParseEntry(line)
		if err != nil || !ok {
			if ok || e != (Entry{}) {
				t.Fatalf("ParseEntry(%q) = %+v, %v, %v", line, e, ok, err)
			}
			return
		}
		inst, kind, own := units.FromUnit(e.Unit)
		if !own || kind != units.KindService || inst.String() != e.Instance {
			t.Fatalf("ParseEntry(%q): unit %q, instance %q", line, e.Unit, e.Instance)
		}
		if _, err := units.ParseInstance(e.Instance); err != nil {
			t.Fatalf("ParseEntry(%q): instance %q does not parse: %v", line, e.Instance, err)
		}
		switch e.Stream {
		case StreamStdout, StreamStderr, StreamSystemd:
		default:
			t.Fatalf("ParseEntry(%q): stream %q", line, e.Stream)
		}
		if len(e.Message) > len(line) || len(e.Cursor) > len(line) {
			t.Fatalf("ParseEntry(%q): fields longer than the line: %+v", line, e)
		}
	})
}
