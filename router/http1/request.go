package http1

import (
	"bytes"
	"errors"
)

// Request is a parsed HTTP/1.x request head. Its slices point into the
// buffer it was parsed from.
type Request struct {
	// Method and Target are the request line's first two fields.
	Method, Target []byte
	// Minor is the version's minor number: HTTP/1.Minor.
	Minor int
	// Host is the Host header's value (nil without one).
	Host []byte
	// ContentLength is -1 when the request has no Content-Length.
	ContentLength int64
	// Chunked: Transfer-Encoding present (only chunked is valid).
	Chunked bool
	// Close: Connection: close.
	Close bool
	// KeepAlive: Connection: keep-alive (for HTTP/1.0).
	KeepAlive bool
	// Upgrade: an Upgrade header or Connection: upgrade.
	Upgrade bool
	// Expect: an Expect header.
	Expect bool
	// ConnTokens: Connection names headers other than close/keep-alive/upgrade.
	ConnTokens bool
	// Lines are the header lines without their CRLF, in order.
	Lines [][]byte
	// Size is the length of the head including the blank line.
	Size int
}

// errors of ParseRequest; every one is a 400 except ErrHeadTooLarge (431).
var (
	ErrIncomplete     = errors.New("incomplete head")
	errBadRequestLine = errors.New("malformed request line")
	errBadVersion     = errors.New("unsupported HTTP version")
	errBareLF         = errors.New("line not ended by CRLF")
	errObsFold        = errors.New("obsolete line folding")
	errBadHeader      = errors.New("malformed header line")
	errBadHeaderValue = errors.New("invalid byte in header value")
	errMultipleHost   = errors.New("more than one Host header")
	errNoHost         = errors.New("no Host header")
	errBadHost        = errors.New("invalid Host header")
	errBadCL          = errors.New("invalid Content-Length")
	errCLandTE        = errors.New("both Content-Length and Transfer-Encoding")
	errBadTE          = errors.New("unsupported Transfer-Encoding")
	errTE10           = errors.New("Transfer-Encoding in an HTTP/1.0 request")
)

// maxHeaderLines bounds the header lines of one request.
const maxHeaderLines = 128

// ParseRequest parses the request head at the start of b. It returns
// ErrIncomplete when b does not hold the whole head yet. It is strict
// where leniency lets two parsers disagree about where a request ends
// (request smuggling): bare LF, bare CR, obs-fold, whitespace before a
// colon, control bytes, several Host or Content-Length headers, and
// Content-Length with Transfer-Encoding are refused.
func ParseRequest(b []byte, h *Request) error {
	lines := h.Lines[:0]
	*h = Request{ContentLength: -1, Lines: lines}
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		// A bare LF anywhere in what we have is an error already, so that a
		// client cannot make us wait for a CRLFCRLF that a lenient parser
		// behind would not need.
		if bytes.IndexByte(b, '\n') >= 0 {
			if err := checkCRLF(b); err != nil {
				return err
			}
		}
		return ErrIncomplete
	}
	h.Size = end + 4
	head := b[:end+2] // every line with its CRLF
	if err := checkCRLF(head); err != nil {
		return err
	}
	nl := bytes.IndexByte(head, '\n')
	if err := h.parseRequestLine(head[:nl-1]); err != nil {
		return err
	}
	rest := head[nl+1:]
	for len(rest) > 0 {
		nl := bytes.IndexByte(rest, '\n')
		line := rest[:nl-1]
		rest = rest[nl+1:]
		if len(line) == 0 {
			return errBadHeader
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		if len(h.Lines) >= maxHeaderLines {
			return ErrHeadTooLarge
		}
		if err := h.header(line); err != nil {
			return err
		}
		h.Lines = append(h.Lines, line)
	}
	if h.Host == nil && h.Minor == 1 {
		return errNoHost
	}
	if h.Chunked && h.ContentLength >= 0 {
		return errCLandTE
	}
	if h.Chunked && h.Minor == 0 {
		// RFC 9112 §6.1: its framing is faulty; servers (Go's among them)
		// ignore it and would read the body as the next request.
		return errTE10
	}
	return nil
}

var crlfcrlf = []byte("\r\n\r\n")

// checkCRLF refuses a LF not preceded by CR and a CR not followed by LF.
func checkCRLF(b []byte) error {
	for i, c := range b {
		switch c {
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return errBareLF
			}
		case '\r':
			if i+1 < len(b) && b[i+1] != '\n' {
				return errBareLF
			}
		}
	}
	return nil
}

func (h *Request) parseRequestLine(l []byte) error {
	sp := bytes.IndexByte(l, ' ')
	if sp <= 0 {
		return errBadRequestLine
	}
	h.Method = l[:sp]
	for _, c := range h.Method {
		if !isTchar(c) {
			return errBadRequestLine
		}
	}
	l = l[sp+1:]
	sp = bytes.IndexByte(l, ' ')
	if sp <= 0 {
		return errBadRequestLine
	}
	h.Target = l[:sp]
	for _, c := range h.Target {
		if c <= ' ' || c >= 0x7f {
			return errBadRequestLine
		}
	}
	// origin-form, or forms only the fallback path serves (absolute-form,
	// asterisk, CONNECT's authority); anything else is no request target.
	if h.Target[0] != '/' && string(h.Target) != "*" && !EqualFold(h.Method, "CONNECT") &&
		!hasPrefixFold(h.Target, "http://") && !hasPrefixFold(h.Target, "https://") {
		return errBadRequestLine
	}
	if h.Target[0] == '/' && !pathEscapesOK(h.Target) {
		return errBadRequestLine
	}
	switch string(l[sp+1:]) {
	case "HTTP/1.1":
		h.Minor = 1
	case "HTTP/1.0":
		h.Minor = 0
	default:
		return errBadVersion
	}
	return nil
}

// pathEscapesOK reports whether every '%' in the target's path (up to the
// query) starts a valid escape, two hex digits: a server behind the proxy
// (net/http, for one) refuses the request otherwise, and the fast path must
// not pass on what the app cannot read.
func pathEscapesOK(target []byte) bool {
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		target = target[:q]
	}
	for i := 0; i < len(target); i++ {
		if target[i] != '%' {
			continue
		}
		if i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2]) {
			return false
		}
		i += 2
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// header checks one header line and notes what the proxy needs from it.
func (h *Request) header(line []byte) error {
	name, v, err := splitField(line) // whitespace before the colon is refused
	if err != nil {
		return err
	}
	switch {
	case EqualFold(name, "host"):
		if h.Host != nil {
			return errMultipleHost
		}
		if !validHost(v) {
			return errBadHost
		}
		h.Host = v
	case EqualFold(name, "content-length"):
		if h.ContentLength >= 0 {
			return errBadCL // even an equal repetition: refuse, do not merge
		}
		n, ok := parseCL(v)
		if !ok {
			return errBadCL
		}
		h.ContentLength = n
	case EqualFold(name, "transfer-encoding"):
		if h.Chunked || !EqualFold(v, "chunked") {
			return errBadTE
		}
		h.Chunked = true
	case EqualFold(name, "connection"):
		forEachToken(v, func(t []byte) {
			switch {
			case EqualFold(t, "close"):
				h.Close = true
			case EqualFold(t, "keep-alive"):
				h.KeepAlive = true
			case EqualFold(t, "upgrade"):
				h.Upgrade = true
			default:
				h.ConnTokens = true
			}
		})
	case EqualFold(name, "upgrade"):
		h.Upgrade = true
	case EqualFold(name, "expect"):
		h.Expect = true
	}
	return nil
}

// parseCL parses a Content-Length: digits only, at most 18 of them.
func parseCL(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validHost accepts what may stand in a Host header (reg-name, IPv4,
// [IPv6], optional port), not empty.
func validHost(v []byte) bool {
	if len(v) == 0 || len(v) > 255 {
		return false
	}
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == '_', c == ':', c == '[', c == ']', c == '~', c == '%':
		default:
			return false
		}
	}
	return validPort(v)
}

// ValidHostPort reports whether the port of a Host header value, if it
// has one, is a TCP port: at most five digits, at most 65535 (an empty
// port, "host:", is allowed, as RFC 3986 allows it). net/http's server
// checks the characters of Host but not this; the router refuses such a
// Host with 400 on either path.
func ValidHostPort(host string) bool { return validPort(host) }

func validPort[T string | []byte](v T) bool {
	i := len(v) - 1
	for i >= 0 && v[i] != ':' {
		if v[i] == ']' {
			return true // [::1] has no port
		}
		i--
	}
	if i < 0 || len(v)-i-1 > 5 {
		return i < 0
	}
	n := 0
	for _, c := range []byte(v[i+1:]) {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

func forEachToken(v []byte, f func([]byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var t []byte
		if i < 0 {
			t, v = v, nil
		} else {
			t, v = v[:i], v[i+1:]
		}
		if t = TrimOWS(t); len(t) > 0 {
			f(t)
		}
	}
}

// TrimOWS trims optional whitespace (spaces and tabs) from both ends.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// EqualFold compares ASCII case-insensitively without allocating.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// isTchar is RFC 9110's tchar.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// ErrHeadTooLarge means the head exceeds the limit (431).
var ErrHeadTooLarge = errors.New("request header fields too large")

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && EqualFold(b[:len(prefix)], prefix)
}
