package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// IsParseError reports whether err is ParseRequest's verdict on a malformed
// head (a 400), as opposed to ErrIncomplete, ErrHeadTooLarge or an I/O error.
func IsParseError(err error) bool {
	switch err {
	case errBadRequestLine, errBadVersion, errBareLF, errObsFold, errBadHeader, errBadHeaderValue,
		errMultipleHost, errNoHost, errBadHost, errBadCL, errCLandTE, errBadTE, errTE10:
		return true
	}
	return false
}

// StatusText is the reason phrase the router writes with one of its own
// error statuses.
func StatusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 408:
		return "Request Timeout"
	case 413:
		return "Request Entity Too Large"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 502:
		return "Bad Gateway"
	case 504:
		return "Gateway Timeout"
	}
	return "Error"
}

// MaxResponseHead bounds an instance's response head; ReadResponse's reader
// must buffer at least as much.
const MaxResponseHead = 16 << 10

// ErrResponseHeadTooLarge: the instance's response head exceeds
// MaxResponseHead.
var ErrResponseHeadTooLarge = errors.New("response head larger than 16 KiB")

// ReadResponse reads and parses the response head at the start of br into
// h, leaving it buffered in br (the caller discards h.Size bytes after use).
func ReadResponse(br *bufio.Reader, h *Response) error {
	for {
		p, _ := br.Peek(br.Buffered())
		if len(p) > 0 {
			err := ParseResponse(p, h)
			if err != ErrIncomplete {
				return err
			}
			if len(p) >= MaxResponseHead {
				return ErrResponseHeadTooLarge
			}
		}
		if _, err := br.Peek(len(p) + 1); err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
}

// NamedInConnection reports whether the response's Connection header names
// the header name (a hop-by-hop header of the instance).
func (h *Response) NamedInConnection(name []byte) bool {
	for _, n := range h.ConnNames {
		if bytes.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// MaxTrailerLines bounds a chunked response's trailer section.
const MaxTrailerLines = 32

// ErrBadChunk: an instance's chunked body is not framed as RFC 9112 §7.1
// says.
var ErrBadChunk = errors.New("malformed chunked body from instance")

// ParseChunkSize parses a chunk-size line without its CRLF; chunk
// extensions are dropped.
func ParseChunkSize(line []byte) (int64, error) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = TrimOWS(line)
	if len(line) == 0 || len(line) > 15 {
		return 0, ErrBadChunk
	}
	var size int64
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, ErrBadChunk
		}
		size = size<<4 | int64(d)
	}
	return size, nil
}
