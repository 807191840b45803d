package router

import (
	"bytes"
	"errors"
)

// respHead is a parsed HTTP/1.x response head from an instance. Its slices
// point into the buffer it was parsed from.
type respHead struct {
	minor int
	code  int
	// status is the status line after "HTTP/1.x " (code and reason).
	status []byte
	// contentLength is -1 when the response has no Content-Length.
	contentLength int64
	chunked       bool
	closeConn     bool
	keepAlive     bool
	// connNames is set when Connection names other headers (hop-by-hop
	// headers of the instance that must not reach the client).
	connNames [][]byte
	lines     [][]byte
	size      int
}

var (
	errBadStatusLine = errors.New("malformed status line")
	errBadRespTE     = errors.New("unsupported Transfer-Encoding in response")
	errBadRespCL     = errors.New("invalid Content-Length in response")
)

// parseRespHead parses the response head at the start of b, as strictly as
// parseHead: an instance is a tenant too.
func parseRespHead(b []byte, h *respHead) error {
	lines, names := h.lines[:0], h.connNames[:0]
	*h = respHead{contentLength: -1, lines: lines, connNames: names}
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		return errHeadIncomplete
	}
	h.size = end + 4
	head := b[:end+2]
	if err := checkCRLF(head); err != nil {
		return err
	}
	nl := bytes.IndexByte(head, '\n')
	sl := head[:nl-1]
	if len(sl) < 12 || !bytes.HasPrefix(sl, []byte("HTTP/1.")) || (sl[7] != '0' && sl[7] != '1') || sl[8] != ' ' {
		return errBadStatusLine
	}
	h.minor = int(sl[7] - '0')
	for _, c := range sl[9:12] {
		if c < '0' || c > '9' {
			return errBadStatusLine
		}
		h.code = h.code*10 + int(c-'0')
	}
	if h.code < 100 || (len(sl) > 12 && sl[12] != ' ') {
		return errBadStatusLine
	}
	for _, c := range sl[12:] {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return errBadStatusLine
		}
	}
	h.status = sl[9:]
	rest := head[nl+1:]
	for len(rest) > 0 {
		nl := bytes.IndexByte(rest, '\n')
		line := rest[:nl-1]
		rest = rest[nl+1:]
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		if len(h.lines) >= maxHeaderLines {
			return errHeadTooLarge
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errBadHeader
		}
		name := line[:colon]
		for _, c := range name {
			if !isTchar(c) {
				return errBadHeader
			}
		}
		v := trimOWS(line[colon+1:])
		for _, c := range v {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return errBadHeaderValue
			}
		}
		switch {
		case equalFold(name, "content-length"):
			n, ok := parseCL(v)
			if !ok || (h.contentLength >= 0 && h.contentLength != n) {
				return errBadRespCL
			}
			h.contentLength = n
		case equalFold(name, "transfer-encoding"):
			// Only "chunked" is relayed; anything else (gzip, chunked) would
			// need the proxy to re-frame what it does not decode.
			if h.chunked || !equalFold(v, "chunked") {
				return errBadRespTE
			}
			h.chunked = true
		case equalFold(name, "connection"):
			forEachToken(v, func(t []byte) {
				switch {
				case equalFold(t, "close"):
					h.closeConn = true
				case equalFold(t, "keep-alive"):
					h.keepAlive = true
				default:
					h.connNames = append(h.connNames, t)
				}
			})
		}
		h.lines = append(h.lines, line)
	}
	if h.chunked && h.contentLength >= 0 {
		return errCLandTE
	}
	return nil
}

// hopByHop reports whether a header (by name) is about one connection and
// must not be relayed: RFC 9110 §7.6.1 and the ones proxies drop by habit.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 7:
		return equalFold(name, "upgrade") || equalFold(name, "trailer")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 16:
		return equalFold(name, "proxy-connection")
	case 17:
		return equalFold(name, "transfer-encoding")
	}
	return false
}

// headerName is the name part of a checked header line.
func headerName(line []byte) []byte {
	return line[:bytes.IndexByte(line, ':')]
}
