package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/godbus/dbus/v5"
)

var want = map[string]byte{"ActiveState": 's', "SubState": 's', "ActiveEnterTimestamp": 't', "InactiveEnterTimestamp": 't'}

func keepTen(unit string) bool { return strings.HasPrefix(unit, "tenement-") }

// encode writes msg as godbus does (the encoder every D-Bus test here
// trusts), in the given byte order.
func encode(t testing.TB, msg *dbus.Message, order binary.ByteOrder) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := msg.EncodeTo(&b, order); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func signal(path, iface, member string, body ...any) *dbus.Message {
	return &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldPath:      dbus.MakeVariant(dbus.ObjectPath(path)),
		dbus.FieldInterface: dbus.MakeVariant(iface),
		dbus.FieldMember:    dbus.MakeVariant(member),
		dbus.FieldSender:    dbus.MakeVariant("org.freedesktop.systemd1"),
		dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf(body...)),
	}, Body: body}
}

// unitChange is a PropertiesChanged of the Unit interface with the
// properties systemd sends, wanted or not, of every shape on its wire.
func unitChange(path string, active, sub string, since uint64) *dbus.Message {
	type cond struct {
		A, B string
		C, D bool
		E    string
		F    int32
	}
	changed := map[string]dbus.Variant{
		"ActiveState":            dbus.MakeVariant(active),
		"SubState":               dbus.MakeVariant(sub),
		"ActiveEnterTimestamp":   dbus.MakeVariant(since),
		"InactiveEnterTimestamp": dbus.MakeVariant(uint32(7)), // the wrong type: left out
		"Conditions":             dbus.MakeVariant([]cond{{"a", "b", true, false, "c", -1}}),
		"Names":                  dbus.MakeVariant([]string{"x", "y"}),
		"InvocationID":           dbus.MakeVariant([]byte{1, 2, 3, 4, 5}),
		"Nested":                 dbus.MakeVariant(dbus.MakeVariant(map[string]dbus.Variant{"k": dbus.MakeVariant(int16(-2))})),
		"Job": dbus.MakeVariant(struct {
			ID uint32
			P  dbus.ObjectPath
		}{3, "/org/freedesktop/systemd1/job/3"}),
		"Sig":   dbus.MakeVariant(dbus.ParseSignatureMust("a{sv}")),
		"Float": dbus.MakeVariant(1.5),
	}
	return signal(path, "org.freedesktop.DBus.Properties", "PropertiesChanged", "org.freedesktop.systemd1.Unit", changed, []string{"Invalidated"})
}

type got struct {
	unit    string
	changed map[string]dbus.Variant
}

func readAll(t *testing.T, stream []byte) ([]got, error) {
	t.Helper()
	r := NewReader(bufio.NewReaderSize(bytes.NewReader(stream), 64), keepTen, want)
	var out []got
	for {
		u, c, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, got{u, c})
	}
}

func TestReaderKeepsUnitChangesOnly(t *testing.T) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		var stream []byte
		add := func(m *dbus.Message) { stream = append(stream, encode(t, m, order)...) }
		svc := UnitPathPrefix + "tenement_2dapi_40prod_2eservice"
		add(signal("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "JobNew", uint32(5), dbus.ObjectPath("/org/freedesktop/systemd1/job/5"), "tenement-api@prod.service"))
		add(unitChange(svc, "active", "running", 1234))
		// The Service interface's change of the same unit: dropped.
		add(signal(svc, "org.freedesktop.DBus.Properties", "PropertiesChanged", "org.freedesktop.systemd1.Service",
			map[string]dbus.Variant{"MainPID": dbus.MakeVariant(uint32(9)), "ActiveState": dbus.MakeVariant("no")}, []string{}))
		// Another program's unit: dropped.
		add(unitChange(UnitPathPrefix+"cron_2eservice", "active", "running", 1))
		// A method return: dropped.
		add(&dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldReplySerial: dbus.MakeVariant(uint32(1)), dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf("x"))}, Body: []any{"x"}})
		// A change with nothing wanted: dropped.
		add(signal(svc, "org.freedesktop.DBus.Properties", "PropertiesChanged", "org.freedesktop.systemd1.Unit",
			map[string]dbus.Variant{"Names": dbus.MakeVariant([]string{"a"})}, []string{}))
		add(unitChange(UnitPathPrefix+"tenement_2dapi_40prod_2esocket", "inactive", "dead", 0))

		out, err := readAll(t, stream)
		if err != io.EOF {
			t.Fatalf("%v: err %v, want io.EOF", order, err)
		}
		wantOut := []got{
			{"tenement-api@prod.service", map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("active"), "SubState": dbus.MakeVariant("running"), "ActiveEnterTimestamp": dbus.MakeVariant(uint64(1234))}},
			{"tenement-api@prod.socket", map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("inactive"), "SubState": dbus.MakeVariant("dead"), "ActiveEnterTimestamp": dbus.MakeVariant(uint64(0))}},
		}
		if !reflect.DeepEqual(out, wantOut) {
			t.Fatalf("%v:\n got %v\nwant %v", order, out, wantOut)
		}
	}
}

func TestReaderRefusesMalformed(t *testing.T) {
	good := encode(t, unitChange(UnitPathPrefix+"tenement_2da_40b_2eservice", "active", "running", 1), binary.LittleEndian)
	cases := map[string][]byte{
		"endianness": append([]byte{'x'}, good[1:]...),
		"too long": func() []byte {
			b := bytes.Clone(good)
			binary.LittleEndian.PutUint32(b[4:], MaxMessage)
			return b
		}(),
		"short body": good[:len(good)-3],
		"array longer than the body": func() []byte {
			b := bytes.Clone(good)
			i := bytes.Index(b, []byte("org.freedesktop.systemd1.Unit")) + len("org.freedesktop.systemd1.Unit") + 1
			i = int(align(uint64(i), 4))
			binary.LittleEndian.PutUint32(b[i:], 1<<30)
			return b
		}(),
	}
	for name, b := range cases {
		_, err := readAll(t, b)
		if err == nil || err == io.EOF {
			t.Errorf("%s: err %v, want an error", name, err)
		}
		if name != "short body" && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}

func TestAuth(t *testing.T) {
	var w bytes.Buffer
	if err := Auth(&w, bufio.NewReader(strings.NewReader("OK 0123456789abcdef\r\n")), 0); err != nil {
		t.Fatal(err)
	}
	if got := w.String(); got != "\x00AUTH EXTERNAL 30\r\nBEGIN\r\n" {
		t.Fatalf("sent %q", got)
	}
	if err := Auth(io.Discard, bufio.NewReader(strings.NewReader("REJECTED EXTERNAL\r\n")), 0); err == nil {
		t.Fatal("a refusal was taken for OK")
	}
	if err := Auth(io.Discard, bufio.NewReader(strings.NewReader(strings.Repeat("O", 600))), 0); err == nil {
		t.Fatal("an endless line was taken for OK")
	}
}

// FuzzReader: any bytes end in an error (never a panic), and where both
// Reader and godbus read a message as a unit's PropertiesChanged, they read
// the same. (godbus reads some malformed messages Reader refuses, such as an
// array whose last element runs past its length; FuzzReaderValues checks
// that Reader reads every well-formed one.)
func FuzzReader(f *testing.F) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		f.Add(encode(f, unitChange(UnitPathPrefix+"tenement_2dapi_40prod_2eservice", "active", "running", 99), order))
		f.Add(encode(f, signal("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "UnitRemoved", "tenement-x.slice", dbus.ObjectPath("/x")), order))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bufio.NewReader(bytes.NewReader(b)), keepTen, want)
		unit, changed, err := r.Next()
		if err != nil && err != io.EOF {
			return // refused (a short or malformed message)
		}
		msg, derr := dbus.DecodeMessage(bytes.NewReader(b))
		if derr != nil {
			return
		}
		exp, expUnit := relevant(msg)
		if err == io.EOF && len(exp) > 0 {
			t.Fatalf("godbus reads %v; wire skipped it", msg)
		}
		if err == nil && (unit != expUnit || !reflect.DeepEqual(changed, exp)) {
			t.Fatalf("godbus reads %v; wire: %s %v", msg, unit, changed)
		}
	})
}

// relevant is what Reader must return for msg, as godbus decoded it.
func relevant(msg *dbus.Message) (map[string]dbus.Variant, string) {
	if msg.Type != dbus.TypeSignal || len(msg.Body) != 3 {
		return nil, ""
	}
	path, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	iface, _ := msg.Headers[dbus.FieldInterface].Value().(string)
	member, _ := msg.Headers[dbus.FieldMember].Value().(string)
	sig, _ := msg.Headers[dbus.FieldSignature].Value().(dbus.Signature)
	name, _ := msg.Body[0].(string)
	props, ok := msg.Body[1].(map[string]dbus.Variant)
	if !ok || iface != "org.freedesktop.DBus.Properties" || member != "PropertiesChanged" || name != "org.freedesktop.systemd1.Unit" ||
		sig.String() != "sa{sv}as" || !strings.HasPrefix(string(path), UnitPathPrefix) || !keepTen(UnitFromPath(string(path))) {
		return nil, ""
	}
	exp := map[string]dbus.Variant{}
	for k, v := range props {
		if t, ok := want[k]; ok && v.Signature().String() == string(t) {
			exp[k] = v
		}
	}
	if len(exp) == 0 {
		return nil, ""
	}
	return exp, UnitFromPath(string(path))
}

// FuzzReaderValues: a well-formed change, whatever its values and the
// other properties beside the wanted ones, is read as godbus wrote it.
func FuzzReaderValues(f *testing.F) {
	f.Add("tenement-api@prod.service", "active", "running", uint64(1), uint32(2), "x", []byte{1}, true, int16(3), false)
	f.Fuzz(func(t *testing.T, unit, active, sub string, since uint64, u uint32, other string, raw []byte, flag bool, n int16, big bool) {
		for _, s := range []string{unit, active, sub, other} {
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				return // godbus writes no such string, nor does systemd
			}
		}
		if !keepTen(unit) {
			return
		}
		type rec struct {
			S string
			B bool
			N int16
			A []string
		}
		changed := map[string]dbus.Variant{
			"ActiveState":            dbus.MakeVariant(active),
			"SubState":               dbus.MakeVariant(sub),
			"ActiveEnterTimestamp":   dbus.MakeVariant(since),
			"InactiveEnterTimestamp": dbus.MakeVariant(since ^ uint64(u)),
			other:                    dbus.MakeVariant([]rec{{other, flag, n, []string{other, active}}}),
			other + "b":              dbus.MakeVariant(raw),
			other + "u":              dbus.MakeVariant(u),
			other + "v":              dbus.MakeVariant(dbus.MakeVariant(map[string]dbus.Variant{other: dbus.MakeVariant(n)})),
		}
		order := binary.ByteOrder(binary.LittleEndian)
		if big {
			order = binary.BigEndian
		}
		path := UnitPathPrefix + pathEscape(unit)
		b := encode(t, signal(path, "org.freedesktop.DBus.Properties", "PropertiesChanged", "org.freedesktop.systemd1.Unit", changed, []string{other}), order)
		gotUnit, got, err := NewReader(bufio.NewReader(bytes.NewReader(b)), keepTen, want).Next()
		if err != nil {
			t.Fatalf("%v", err)
		}
		exp := map[string]dbus.Variant{}
		for k, v := range changed {
			if t, ok := want[k]; ok && v.Signature().String() == string(t) {
				exp[k] = v
			}
		}
		if gotUnit != unit || !reflect.DeepEqual(got, exp) {
			t.Fatalf("got %s %v, want %s %v", gotUnit, got, unit, exp)
		}
	})
}

// pathEscape is systemd's sd_bus_path_encode of a unit name.
func pathEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return b.String()
}

// AppendCall writes what godbus reads as the same call, and Reader reads
// answers and JobRemoved as godbus wrote them.
func TestCallsAndAnswers(t *testing.T) {
	b := AppendCall(nil, 7, "StopUnit", "tenement-api-b:03-prod.slice", "replace")
	msg, err := dbus.DecodeMessage(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("godbus cannot read the call: %v", err)
	}
	if msg.Type != dbus.TypeMethodCall || msg.Serial() != 7 ||
		msg.Headers[dbus.FieldMember].Value() != "StopUnit" ||
		msg.Headers[dbus.FieldInterface].Value() != "org.freedesktop.systemd1.Manager" ||
		msg.Headers[dbus.FieldPath].Value() != dbus.ObjectPath("/org/freedesktop/systemd1") ||
		msg.Headers[dbus.FieldDestination].Value() != "org.freedesktop.systemd1" ||
		!reflect.DeepEqual(msg.Body, []any{"tenement-api-b:03-prod.slice", "replace"}) {
		t.Fatalf("the call reads as %v", msg)
	}
	if _, err := dbus.DecodeMessage(bytes.NewReader(AppendCall(nil, 8, "ResetFailedUnit", "x.service"))); err != nil {
		t.Fatalf("one argument: %v", err)
	}

	var stream []byte
	ret := &dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(uint32(7)), dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf(dbus.ObjectPath("")))},
		Body: []any{dbus.ObjectPath("/org/freedesktop/systemd1/job/42")}}
	stream = append(stream, encode(t, ret, binary.LittleEndian)...)
	errMsg := &dbus.Message{Type: dbus.TypeError, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(uint32(8)), dbus.FieldErrorName: dbus.MakeVariant("org.freedesktop.systemd1.NoSuchUnit"),
		dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf(""))}, Body: []any{"Unit x.service not loaded."}}
	stream = append(stream, encode(t, errMsg, binary.BigEndian)...)
	stream = append(stream, encode(t, signal("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "JobRemoved",
		uint32(42), dbus.ObjectPath("/org/freedesktop/systemd1/job/42"), "tenement-api-b:03-prod.slice", "done"), binary.LittleEndian)...)
	r := NewReader(bufio.NewReader(bytes.NewReader(stream)), keepTen, want)
	var got []Event
	for {
		ev, err := r.NextEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	wantEv := []Event{
		{Kind: KindReturn, ReplySerial: 7, Arg: "/org/freedesktop/systemd1/job/42"},
		{Kind: KindError, ReplySerial: 8, ErrorName: "org.freedesktop.systemd1.NoSuchUnit", Arg: "Unit x.service not loaded."},
		{Kind: KindJobRemoved, Arg: "/org/freedesktop/systemd1/job/42", Unit: "tenement-api-b:03-prod.slice", Result: "done"},
	}
	if !reflect.DeepEqual(got, wantEv) {
		t.Fatalf("got %+v\nwant %+v", got, wantEv)
	}
}
