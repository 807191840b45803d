// Package wire reads the D-Bus messages systemd writes on its private
// socket (/run/systemd/private) and keeps only what ten follows: the
// Unit interface's PropertiesChanged signals of chosen units, and of them
// only the properties asked for.
//
// On that socket systemd sends every signal of every unit to every client:
// a removal of one instance is a dozen or more messages, most of them the
// Service, Socket and Slice interfaces' long property lists. A general
// D-Bus library decodes each message whole, three reads from the socket
// and a map of variants per message, to throw most of them away; that was
// over a third of ten's CPU time while it removed instances. Reader reads
// through a buffer, looks at a message's header first (type, member,
// interface, path), and decodes a body only for a PropertiesChanged of a
// unit it keeps; of its properties it decodes the ones asked for and steps
// over the rest by their signature.
//
// Every length read from the wire is checked against the message's bounds
// (a message is at most MaxMessage bytes), and nesting is bounded, so a
// malformed message is an error, never a panic or an unbounded allocation.
package wire

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"
)

// MaxMessage is the largest message Reader accepts: the D-Bus
// specification's limit is 128 MiB; systemd's signals are a few KiB.
const MaxMessage = 16 << 20

// UnitPath is the object path under which systemd puts its units, and
// UnitPathPrefix what each unit's path starts with.
const (
	UnitPath       = "/org/freedesktop/systemd1/unit"
	UnitPathPrefix = UnitPath + "/"
)

const (
	unitInterface       = "org.freedesktop.systemd1.Unit"
	managerInterface    = "org.freedesktop.systemd1.Manager"
	propertiesInterface = "org.freedesktop.DBus.Properties"
	maxDepth            = 64 // the specification's 32 arrays and 32 structs
)

// ErrMalformed is wrapped by the errors of messages that break the wire
// format.
var ErrMalformed = errors.New("malformed D-Bus message")

// Reader reads messages from a systemd connection (after Auth).
type Reader struct {
	r    *bufio.Reader
	buf  []byte
	keep func(unit string) bool
	want map[string]byte
}

// NewReader reads messages from r. keep chooses the units whose changes
// Next returns (nil: all); want names the properties to decode and the
// D-Bus type each must have ('s' string, 't' uint64, 'u' uint32, 'b'
// boolean); a property of another type is left out.
func NewReader(r *bufio.Reader, keep func(unit string) bool, want map[string]byte) *Reader {
	return &Reader{r: r, keep: keep, want: want}
}

// Next returns the next change of a kept unit that carries at least one
// wanted property: the unit's name and those properties. Other messages
// are read and dropped. The error is the connection's (io.EOF when it
// closed) or, wrapping ErrMalformed, a message that cannot be read.
func (r *Reader) Next() (string, map[string]dbus.Variant, error) {
	for {
		ev, err := r.NextEvent()
		if err != nil {
			return "", nil, err
		}
		if ev.Kind == KindChange {
			return ev.Unit, ev.Changed, nil
		}
	}
}

// Kind is what an Event is.
type Kind int

// The kinds of Event.
const (
	// KindChange is a change of a kept unit: Unit, Changed.
	KindChange Kind = iota + 1
	// KindReturn is the answer to a method call: ReplySerial, and Arg
	// when the answer's first value is a string or an object path.
	KindReturn
	// KindError is an error answer: ReplySerial, ErrorName, Arg (its
	// message).
	KindError
	// KindJobRemoved is the Manager's JobRemoved signal: Arg the job's
	// object path, Unit, Result ("done", "failed", ...).
	KindJobRemoved
)

// Event is a message Reader keeps.
type Event struct {
	Kind        Kind
	Unit        string
	Changed     map[string]dbus.Variant
	ReplySerial uint32
	ErrorName   string
	Arg         string
	Result      string
}

// NextEvent returns the next message of a kind Reader keeps: a change
// (as Next), an answer to a call, or a JobRemoved. Other messages are read
// and dropped.
func (r *Reader) NextEvent() (Event, error) {
	for {
		msg, err := r.read()
		if err != nil {
			return Event{}, err
		}
		ev, err := r.parse(msg)
		if err != nil {
			return Event{}, err
		}
		if ev.Kind != 0 {
			return ev, nil
		}
	}
}

// read returns the next whole message, in a buffer reused by the next read.
func (r *Reader) read() ([]byte, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r.r, fixed[:]); err != nil {
		return nil, err
	}
	order, err := byteOrder(fixed[0])
	if err != nil {
		return nil, err
	}
	body := uint64(order.Uint32(fixed[4:]))
	fields := uint64(order.Uint32(fixed[12:]))
	total := align(16+fields, 8) + body
	if total > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, total, MaxMessage)
	}
	if uint64(cap(r.buf)) < total {
		r.buf = make([]byte, total)
	}
	msg := r.buf[:total]
	copy(msg, fixed[:])
	if _, err := io.ReadFull(r.r, msg[16:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return msg, nil
}

func byteOrder(b byte) (binary.ByteOrder, error) {
	switch b {
	case 'l':
		return binary.LittleEndian, nil
	case 'B':
		return binary.BigEndian, nil
	}
	return nil, fmt.Errorf("%w: endianness byte %q", ErrMalformed, b)
}

func align(n, a uint64) uint64 { return (n + a - 1) &^ (a - 1) }

// parse reads the header of one whole message and, for a message Reader
// keeps, what NextEvent returns; a zero Event for any other.
func (r *Reader) parse(msg []byte) (Event, error) {
	order, _ := byteOrder(msg[0])
	d := &decoder{b: msg, order: order}
	fieldsEnd := 16 + uint64(order.Uint32(msg[12:]))
	bodyStart := align(fieldsEnd, 8)
	typ := msg[1]
	if typ < 2 || typ > 4 { // a method call (or unknown): nothing ten answers
		return Event{}, nil
	}
	var path, iface, member, sig, errName string
	var replySerial uint32
	d.pos = 16
	for d.pos < fieldsEnd {
		if err := d.pad(8); err != nil {
			return Event{}, err
		}
		code, err := d.byte()
		if err != nil {
			return Event{}, err
		}
		vsig, err := d.signature()
		if err != nil {
			return Event{}, err
		}
		var s string
		switch {
		case (code == 1 && vsig == "o") || ((code == 2 || code == 3 || code == 4) && vsig == "s"):
			s, err = d.str()
		case code == 8 && vsig == "g":
			s, err = d.signature()
		case code == 5 && vsig == "u":
			replySerial, err = d.u32()
		default:
			err = d.skip(vsig, 0)
		}
		if err != nil {
			return Event{}, err
		}
		switch code {
		case 1:
			path = s
		case 2:
			iface = s
		case 3:
			member = s
		case 4:
			errName = s
		case 8:
			sig = s
		}
	}
	if d.pos != fieldsEnd {
		return Event{}, fmt.Errorf("%w: header fields overrun their length", ErrMalformed)
	}
	d.pos = bodyStart
	switch typ {
	case 2, 3: // method return, error
		ev := Event{Kind: KindReturn, ReplySerial: replySerial}
		if typ == 3 {
			ev.Kind, ev.ErrorName = KindError, errName
		}
		if sig != "" && (sig[0] == 's' || sig[0] == 'o') {
			a, err := d.str()
			if err != nil {
				return Event{}, err
			}
			ev.Arg = a
		}
		return ev, nil
	}
	if member == "JobRemoved" && iface == managerInterface && sig == "uoss" {
		if _, err := d.u32(); err != nil {
			return Event{}, err
		}
		var v [3]string
		for i := range v {
			a, err := d.str()
			if err != nil {
				return Event{}, err
			}
			v[i] = a
		}
		return Event{Kind: KindJobRemoved, Arg: v[0], Unit: v[1], Result: v[2]}, nil
	}
	if member != "PropertiesChanged" || iface != propertiesInterface || sig != "sa{sv}as" ||
		!strings.HasPrefix(path, UnitPathPrefix) {
		return Event{}, nil
	}
	unit := UnitFromPath(path)
	if r.keep != nil && !r.keep(unit) {
		return Event{}, nil
	}
	// The body: the interface, then the changed properties.
	name, err := d.str()
	if err != nil || name != unitInterface {
		return Event{}, err
	}
	if err := d.pad(4); err != nil {
		return Event{}, err
	}
	n, err := d.u32()
	if err != nil {
		return Event{}, err
	}
	if err := d.pad(8); err != nil {
		return Event{}, err
	}
	end := d.pos + uint64(n)
	if end > uint64(len(d.b)) {
		return Event{}, fmt.Errorf("%w: array of %d bytes past the end", ErrMalformed, n)
	}
	var changed map[string]dbus.Variant
	for d.pos < end {
		if err := d.pad(8); err != nil {
			return Event{}, err
		}
		key, err := d.str()
		if err != nil {
			return Event{}, err
		}
		vsig, err := d.signature()
		if err != nil {
			return Event{}, err
		}
		t, ok := r.want[key]
		if !ok || vsig != string(t) {
			if err := d.skip(vsig, 0); err != nil {
				return Event{}, err
			}
			continue
		}
		v, err := d.basic(t)
		if err != nil {
			return Event{}, err
		}
		if changed == nil {
			changed = make(map[string]dbus.Variant, len(r.want))
		}
		changed[key] = dbus.MakeVariant(v)
	}
	if d.pos != end {
		return Event{}, fmt.Errorf("%w: dict entries overrun their array", ErrMalformed)
	}
	if len(changed) == 0 {
		return Event{}, nil
	}
	return Event{Kind: KindChange, Unit: unit, Changed: changed}, nil
}

// AppendCall appends a method call of systemd's Manager (on
// /org/freedesktop/systemd1) with string arguments to b, little-endian,
// with the given serial (not 0).
func AppendCall(b []byte, serial uint32, member string, args ...string) []byte {
	start := len(b)
	le := binary.LittleEndian
	pad := func(a int) {
		for (len(b)-start)%a != 0 {
			b = append(b, 0)
		}
	}
	str := func(s string) {
		pad(4)
		b = le.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
		b = append(b, 0)
	}
	field := func(code byte, sig byte, v string) {
		pad(8)
		b = append(b, code, 1, sig, 0)
		if sig == 'g' {
			b = append(b, byte(len(v)))
			b = append(b, v...)
			b = append(b, 0)
			return
		}
		str(v)
	}
	b = append(b, 'l', 1, 0, 1)
	b = le.AppendUint32(b, 0) // body length, set below
	b = le.AppendUint32(b, serial)
	b = le.AppendUint32(b, 0) // header fields' length, set below
	fields := len(b)
	field(1, 'o', "/org/freedesktop/systemd1")
	field(2, 's', managerInterface)
	field(3, 's', member)
	field(6, 's', "org.freedesktop.systemd1")
	field(8, 'g', strings.Repeat("s", len(args)))
	le.PutUint32(b[start+12:], uint32(len(b)-fields))
	pad(8)
	body := len(b)
	for _, a := range args {
		str(a)
	}
	le.PutUint32(b[start+4:], uint32(len(b)-body))
	return b
}

// decoder reads values of one message; positions count from the message's
// first byte, which is what D-Bus aligns to.
type decoder struct {
	b     []byte
	pos   uint64
	order binary.ByteOrder
}

func (d *decoder) need(n uint64) error {
	if n > uint64(len(d.b)) || d.pos > uint64(len(d.b))-n {
		return fmt.Errorf("%w: %d bytes needed at %d of %d", ErrMalformed, n, d.pos, len(d.b))
	}
	return nil
}

func (d *decoder) pad(a uint64) error {
	p := align(d.pos, a)
	if p > uint64(len(d.b)) {
		return fmt.Errorf("%w: padding past the end", ErrMalformed)
	}
	d.pos = p
	return nil
}

// take steps over the next n bytes and returns them.
func (d *decoder) take(n uint64) ([]byte, error) {
	if err := d.need(n); err != nil {
		return nil, err
	}
	d.pos += n
	return d.b[d.pos-n : d.pos], nil
}

// fixed reads a fixed-size value of n bytes, aligned to n.
func (d *decoder) fixed(n uint64) ([]byte, error) {
	if err := d.pad(n); err != nil {
		return nil, err
	}
	return d.take(n)
}

func (d *decoder) byte() (byte, error) {
	b, err := d.take(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) u32() (uint32, error) {
	b, err := d.fixed(4)
	if err != nil {
		return 0, err
	}
	return d.order.Uint32(b), nil
}

func (d *decoder) u64() (uint64, error) {
	b, err := d.fixed(8)
	if err != nil {
		return 0, err
	}
	return d.order.Uint64(b), nil
}

// str reads a string or object path: a length, the bytes, a NUL (not
// checked, as godbus does not).
func (d *decoder) str() (string, error) {
	n, err := d.u32()
	if err != nil {
		return "", err
	}
	b, err := d.take(uint64(n) + 1)
	if err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

// signature reads a signature: a one-byte length, the bytes, a NUL.
func (d *decoder) signature() (string, error) {
	n, err := d.byte()
	if err != nil {
		return "", err
	}
	b, err := d.take(uint64(n) + 1)
	if err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

// basic reads one value of a type Reader decodes.
func (d *decoder) basic(t byte) (any, error) {
	switch t {
	case 's':
		return d.str()
	case 't':
		return d.u64()
	case 'u':
		return d.u32()
	case 'b':
		v, err := d.u32()
		return v != 0, err
	}
	return nil, fmt.Errorf("type %q: not one wire decodes", t)
}

// skip steps over one value of each complete type in sig.
func (d *decoder) skip(sig string, depth int) error {
	for sig != "" {
		n, err := completeType(sig)
		if err != nil {
			return err
		}
		if err := d.skipOne(sig[:n], depth); err != nil {
			return err
		}
		sig = sig[n:]
	}
	return nil
}

// skipOne steps over one value of the single complete type t.
func (d *decoder) skipOne(t string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrMalformed, maxDepth)
	}
	var size uint64
	switch t[0] {
	case 'y':
		size = 1
	case 'n', 'q':
		size = 2
	case 'b', 'i', 'u', 'h':
		size = 4
	case 'x', 't', 'd':
		size = 8
	case 's', 'o':
		_, err := d.str()
		return err
	case 'g':
		_, err := d.signature()
		return err
	case 'v':
		sig, err := d.signature()
		if err != nil {
			return err
		}
		if n, err := completeType(sig); err != nil || n != len(sig) {
			return fmt.Errorf("%w: variant signature %q", ErrMalformed, sig)
		}
		return d.skipOne(sig, depth+1)
	case '(':
		if err := d.pad(8); err != nil {
			return err
		}
		return d.skip(t[1:len(t)-1], depth+1)
	case 'a':
		n, err := d.u32()
		if err != nil {
			return err
		}
		if err := d.pad(alignOf(t[1])); err != nil {
			return err
		}
		if err := d.need(uint64(n)); err != nil {
			return err
		}
		// Fixed-size elements need no walk; others are stepped over one
		// by one, which also checks that they fill the array exactly.
		end := d.pos + uint64(n)
		elem := t[1:]
		if elem[0] == '{' {
			elem = elem[1 : len(elem)-1]
		}
		for d.pos < end {
			if err := d.pad(alignOf(t[1])); err != nil {
				return err
			}
			if err := d.skip(elem, depth+1); err != nil {
				return err
			}
		}
		if d.pos != end {
			return fmt.Errorf("%w: array elements overrun the array", ErrMalformed)
		}
		return nil
	default:
		return fmt.Errorf("%w: type %q", ErrMalformed, t)
	}
	_, err := d.fixed(size)
	return err
}

func alignOf(t byte) uint64 {
	switch t {
	case 'n', 'q':
		return 2
	case 'b', 'i', 'u', 'h', 's', 'o', 'a':
		return 4
	case 'x', 't', 'd', '(', '{':
		return 8
	}
	return 1 // y, g, v
}

// completeType returns the length of the complete type sig starts with.
func completeType(sig string) (int, error) {
	depth := 0
	for i := 0; i < len(sig); i++ {
		switch c := sig[i]; c {
		case 'a':
			continue // its element follows
		case '(', '{':
			depth++
			if depth > maxDepth {
				return 0, fmt.Errorf("%w: signature %q nests too deep", ErrMalformed, sig)
			}
		case ')', '}':
			depth--
			if depth < 0 {
				return 0, fmt.Errorf("%w: signature %q", ErrMalformed, sig)
			}
		case 'y', 'b', 'n', 'q', 'i', 'u', 'x', 't', 'd', 'h', 's', 'o', 'g', 'v':
		default:
			return 0, fmt.Errorf("%w: signature %q: type %q", ErrMalformed, sig, c)
		}
		if depth == 0 {
			if err := checkContainers(sig[:i+1]); err != nil {
				return 0, err
			}
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("%w: signature %q ends inside a type", ErrMalformed, sig)
}

// checkContainers checks that each struct of t has members, each dict
// entry two with a basic key and sits in an array, and each array an
// element, so that skipOne can take t apart.
func checkContainers(t string) error {
	if !containersOK(t) {
		return fmt.Errorf("%w: signature %q", ErrMalformed, t)
	}
	return nil
}

func containersOK(t string) bool {
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case 'a':
			if i+1 >= len(t) || t[i+1] == ')' || t[i+1] == '}' {
				return false
			}
		case '(':
			if i+1 >= len(t) || t[i+1] == ')' {
				return false
			}
		case '{':
			if i == 0 || t[i-1] != 'a' || i+1 >= len(t) || strings.IndexByte("ybnqiuxtdhsog", t[i+1]) < 0 {
				return false
			}
			n, err := completeType(t[i+2:])
			if err != nil || i+2+n >= len(t) || t[i+2+n] != '}' {
				return false
			}
		}
	}
	return true
}

// UnitFromPath reverses systemd's escaping of a unit name into an object
// path (sd_bus_path_encode: every byte but [A-Za-z0-9] becomes _xx).
func UnitFromPath(p string) string {
	s := p[strings.LastIndexByte(p, '/')+1:]
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+2 < len(s) {
			if c, err := hex.DecodeString(s[i+1 : i+3]); err == nil {
				b.WriteByte(c[0])
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Auth authenticates a fresh connection as uid with EXTERNAL, as systemctl
// does on the private socket; r must read from the same connection as w
// and is the one to hand to NewReader afterwards.
func Auth(w io.Writer, r *bufio.Reader, uid int) error {
	if _, err := io.WriteString(w, "\x00AUTH EXTERNAL "+hex.EncodeToString([]byte(strconv.Itoa(uid)))+"\r\n"); err != nil {
		return err
	}
	line, err := readLine(r)
	if err != nil {
		return fmt.Errorf("D-Bus auth: %w", err)
	}
	if !strings.HasPrefix(line, "OK ") {
		return fmt.Errorf("D-Bus auth refused: %q", line)
	}
	_, err = io.WriteString(w, "BEGIN\r\n")
	return err
}

// readLine reads one auth line of at most 512 bytes.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for len(b) < 512 {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		b = append(b, c)
		if n := len(b); n >= 2 && b[n-2] == '\r' && b[n-1] == '\n' {
			return string(b[:n-2]), nil
		}
	}
	return "", errors.New("D-Bus auth: line longer than 512 bytes")
}
