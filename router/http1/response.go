package http1

import (
	"bytes"
	"errors"
)

// Response is a parsed HTTP/1.x response head from an instance. Its slices
// point into the buffer it was parsed from.
type Response struct {
	// Minor is the version's minor number: HTTP/1.Minor.
	Minor int
	// Code is the status code.
	Code int
	// Status is the status line after "HTTP/1.x " (code and reason).
	Status []byte
	// ContentLength is -1 when the response has no Content-Length.
	ContentLength int64
	// Chunked: Transfer-Encoding: chunked.
	Chunked bool
	// Close and KeepAlive: Connection: close, keep-alive.
	Close, KeepAlive bool
	// ConnNames is set when Connection names other headers (hop-by-hop
	// headers of the instance that must not reach the client).
	ConnNames [][]byte
	// Lines are the header lines without their CRLF, in order.
	Lines [][]byte
	// Size is the length of the head including the blank line.
	Size int
}

var (
	errBadStatusLine = errors.New("malformed status line")
	errBadRespTE     = errors.New("unsupported Transfer-Encoding in response")
	errRespTE10      = errors.New("Transfer-Encoding in an HTTP/1.0 response")
	errBadRespCL     = errors.New("invalid Content-Length in response")
)

// ParseResponse parses the response head at the start of b, as strictly as
// ParseRequest: an instance is a tenant too.
func ParseResponse(b []byte, h *Response) error {
	lines, names := h.Lines[:0], h.ConnNames[:0]
	*h = Response{ContentLength: -1, Lines: lines, ConnNames: names}
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		return ErrIncomplete
	}
	h.Size = end + 4
	head := b[:end+2]
	if err := checkCRLF(head); err != nil {
		return err
	}
	nl := bytes.IndexByte(head, '\n')
	sl := head[:nl-1]
	if len(sl) < 12 || !bytes.HasPrefix(sl, []byte("HTTP/1.")) || (sl[7] != '0' && sl[7] != '1') || sl[8] != ' ' {
		return errBadStatusLine
	}
	h.Minor = int(sl[7] - '0')
	for _, c := range sl[9:12] {
		if c < '0' || c > '9' {
			return errBadStatusLine
		}
		h.Code = h.Code*10 + int(c-'0')
	}
	if h.Code < 100 || (len(sl) > 12 && sl[12] != ' ') {
		return errBadStatusLine
	}
	for _, c := range sl[12:] {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return errBadStatusLine
		}
	}
	h.Status = sl[9:]
	rest := head[nl+1:]
	var clValue []byte // the first Content-Length, as written
	for len(rest) > 0 {
		nl := bytes.IndexByte(rest, '\n')
		line := rest[:nl-1]
		rest = rest[nl+1:]
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		if len(h.Lines) >= maxHeaderLines {
			return ErrHeadTooLarge
		}
		name, v, err := splitField(line)
		if err != nil {
			return err
		}
		switch {
		case EqualFold(name, "content-length"):
			// A repetition is relayed only when it is written the same
			// (1 and 01 are refused, as net/http refuses them).
			n, ok := parseCL(v)
			if !ok || (clValue != nil && !bytes.Equal(clValue, v)) {
				return errBadRespCL
			}
			h.ContentLength, clValue = n, v
		case EqualFold(name, "transfer-encoding"):
			// Only "chunked" is relayed; anything else (gzip, chunked) would
			// need the proxy to re-frame what it does not decode.
			if h.Chunked || !EqualFold(v, "chunked") {
				return errBadRespTE
			}
			h.Chunked = true
		case EqualFold(name, "connection"):
			forEachToken(v, func(t []byte) {
				switch {
				case EqualFold(t, "close"):
					h.Close = true
				case EqualFold(t, "keep-alive"):
					h.KeepAlive = true
				default:
					h.ConnNames = append(h.ConnNames, t)
				}
			})
		}
		h.Lines = append(h.Lines, line)
	}
	if h.Chunked && h.ContentLength >= 0 {
		return errCLandTE
	}
	if h.Chunked && h.Minor == 0 {
		// RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has
		// faulty framing (net/http reads it until close, a client of
		// HTTP/1.1 as chunks): refused, never relayed either way.
		return errRespTE10
	}
	return nil
}

// HopByHop reports whether a header (by name) is about one connection and
// must not be relayed: RFC 9110 §7.6.1 and the ones proxies drop by habit.
func HopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return EqualFold(name, "te")
	case 7:
		return EqualFold(name, "upgrade") || EqualFold(name, "trailer")
	case 10:
		return EqualFold(name, "connection") || EqualFold(name, "keep-alive")
	case 16:
		return EqualFold(name, "proxy-connection")
	case 17:
		return EqualFold(name, "transfer-encoding")
	}
	return false
}

// splitField checks one header (or trailer) field line and returns its
// name and its value without the whitespace around it: the name must be
// a token (so no whitespace before the colon) and the value may hold no
// control byte but a tab.
func splitField(line []byte) (name, value []byte, err error) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, errBadHeader
	}
	name = line[:colon]
	for _, c := range name {
		if !isTchar(c) {
			return nil, nil, errBadHeader
		}
	}
	value = TrimOWS(line[colon+1:])
	for _, c := range value {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return nil, nil, errBadHeaderValue
		}
	}
	return name, value, nil
}

// ValidField reports whether line is a well-formed header or trailer
// field line, as a client's parser will accept it (see splitField).
func ValidField(line []byte) bool {
	_, _, err := splitField(line)
	return err == nil
}

// HeaderName is the name part of a checked header line.
func HeaderName(line []byte) []byte {
	return line[:bytes.IndexByte(line, ':')]
}
