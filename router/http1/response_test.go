package http1

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// respSeeds are response heads an instance might send: the app is a tenant,
// so the bad ones are what a hostile app would try.
var respSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.0 200 OK\r\n\r\nuntil close",
	"HTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
	"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
	"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n",
	// what must be refused: framing two parsers could read differently,
	// and heads that would smuggle lines into the client's stream
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 01\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
	"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
	"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
	"HTTP/1.1 2000 OK\r\n\r\n",
	"HTTP/1.1 099 Low\r\n\r\n",
	"HTTP/1.1 20x OK\r\n\r\n",
	"HTTP/2.0 200 OK\r\n\r\n",
	"HTTP/1.1 200 O\x7fK\r\n\r\n",
	"ICY 200 OK\r\n\r\n",
}

// respRefused are the indexes of respSeeds from which ParseResponse must
// refuse every one.
const respRefused = 8

// FuzzParseResponse checks the parser of instances' answers against
// net/http's: whatever ParseResponse accepts, net/http reads as the same
// status with the same framing (chunked, or the same Content-Length), so
// the router and the client behind it agree where each answer ends and no
// byte of an instance's answer can pass for the start of another's.
func FuzzParseResponse(f *testing.F) {
	for _, s := range respSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h Response
		if err := ParseResponse(data, &h); err != nil {
			return
		}
		if h.Size > len(data) || h.Size < 4 {
			t.Fatalf("head size %d of %d bytes", h.Size, len(data))
		}
		if h.Code < 100 || h.Code > 999 {
			t.Fatalf("code %d", h.Code)
		}
		for _, l := range h.Lines {
			if bytes.ContainsAny(l, "\r\n\x00") {
				t.Fatalf("header line %q has CR, LF or NUL", l)
			}
		}
		if bytes.ContainsAny(h.Status, "\r\n\x00") {
			t.Fatalf("status %q has CR, LF or NUL", h.Status)
		}
		head := data[:h.Size]
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("ParseResponse accepted what net/http refuses (%v): %q", err, head)
		}
		if resp.StatusCode != h.Code {
			t.Fatalf("status %d vs %d: %q", resp.StatusCode, h.Code, head)
		}
		if h.Code < 200 || h.Code == 204 || h.Code == 304 {
			return // no body whatever the head says
		}
		switch {
		case h.Chunked:
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Fatalf("chunked vs %v: %q", resp.TransferEncoding, head)
			}
		case h.ContentLength >= 0:
			if resp.ContentLength != h.ContentLength {
				t.Fatalf("content length %d vs %d: %q", h.ContentLength, resp.ContentLength, head)
			}
		default:
			if resp.ContentLength != -1 || len(resp.TransferEncoding) != 0 {
				t.Fatalf("until close vs net/http's length %d, %v: %q", resp.ContentLength, resp.TransferEncoding, head)
			}
		}
	})
}

func TestParseResponseSeeds(t *testing.T) {
	for i, s := range respSeeds {
		var h Response
		err := ParseResponse([]byte(s), &h)
		if i < respRefused && err != nil {
			t.Errorf("seed %d %q refused: %v", i, s, err)
		}
		if i >= respRefused && err == nil {
			t.Errorf("seed %d %q accepted", i, s)
		}
	}
	var h Response
	if err := ParseResponse([]byte("HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\r\n"), &h); err != nil {
		t.Fatal(err)
	}
	if !h.Close || !h.NamedInConnection([]byte("x-secret")) || h.NamedInConnection([]byte("x-other")) {
		t.Errorf("Connection: close, X-Secret read as close=%v names=%q", h.Close, h.ConnNames)
	}
	if err := ParseResponse([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1"), &h); err != ErrIncomplete {
		t.Errorf("a head without its blank line: %v, want ErrIncomplete", err)
	}
}

// ReadResponse refuses a head that does not end within MaxResponseHead.
func TestReadResponseBounded(t *testing.T) {
	long := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("a", 100)+"\r\n", MaxResponseHead/100)
	var h Response
	err := ReadResponse(bufio.NewReaderSize(strings.NewReader(long), MaxResponseHead+1024), &h)
	if err != ErrResponseHeadTooLarge {
		t.Fatalf("a %d-byte head: %v, want ErrResponseHeadTooLarge", len(long), err)
	}
}

// FuzzParseChunkSize: a chunk size is 1 to 15 hex digits (and an extension
// after ';', dropped), nothing else; its value is the hex number.
func FuzzParseChunkSize(f *testing.F) {
	for _, s := range []string{"0", "a", "FF", "1;ext=1", " 1 ", "", "-1", "0x1", "fffffffffffffff", "1000000000000000", "1 2", "g"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		n, err := ParseChunkSize(line)
		digits := line
		if i := bytes.IndexByte(digits, ';'); i >= 0 {
			digits = digits[:i]
		}
		digits = TrimOWS(digits)
		want, perr := strconv.ParseUint(string(digits), 16, 64)
		valid := perr == nil && len(digits) >= 1 && len(digits) <= 15 && !bytes.ContainsAny(digits, "+-xX_")
		if valid != (err == nil) {
			t.Fatalf("%q: err %v, want valid=%v", line, err, valid)
		}
		if err == nil && (n < 0 || uint64(n) != want) {
			t.Fatalf("%q: %d, want %d", line, n, want)
		}
	})
}

// TestValidField: a trailer line the fast path relays must be one a
// client's parser accepts; anything else ends the body instead.
func TestValidField(t *testing.T) {
	for line, want := range map[string]bool{
		"X-Trailer: 1":      true,
		"X-Trailer:":        true,
		"X-Trailer:\ta b":   true,
		"X-Trai\x8cer: 1":   false,
		"X-Trailer : 1":     false,
		" X-Trailer: 1":     false,
		"\tX-Trailer: 1":    false,
		"X-Trailer: a\x01b": false,
		"X-Trailer: a\x7fb": false,
		": 1":               false,
		"X-Trailer":         false,
		"":                  false,
	} {
		if got := ValidField([]byte(line)); got != want {
			t.Errorf("ValidField(%q) = %v, want %v", line, got, want)
		}
	}
}
