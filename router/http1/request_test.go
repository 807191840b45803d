package http1

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

var headSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a.api.example.test\r\n\r\n",
	"POST /x?y=1 HTTP/1.1\r\nHost: a.api.example.test\r\nContent-Length: 3\r\n\r\nabc",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
	// smuggling and framing conflicts
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\nab",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX: 1\r\n folded\r\n\r\n",
	"GET / HTTP/1.1\nHost: h\n\n",
	"GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
	"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
	// percent escapes in the path: refused when not two hex digits, as the
	// app's server would; the query is the app's to read
	"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /a%4 HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /a%2Fb%c3%A9?q=%zz HTTP/1.1\r\nHost: h\r\n\r\n",
}

// FuzzParseHead checks the fast path's request parser against net/http's:
// whatever ParseRequest accepts, net/http must read as the same request (same
// method, target, Host and body length), so the proxy and any server behind
// it agree where each request ends.
func FuzzParseHead(f *testing.F) {
	for _, s := range headSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h Request
		err := ParseRequest(data, &h)
		if err != nil {
			return
		}
		if h.Size > len(data) {
			t.Fatalf("head size %d > %d", h.Size, len(data))
		}
		if h.Target[0] != '/' {
			return // the fast path hands these to net/http
		}
		req, gerr := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:h.Size])))
		if gerr != nil {
			t.Fatalf("ParseRequest accepted what net/http refuses (%v): %q", gerr, data[:h.Size])
		}
		if req.Method != string(h.Method) || req.RequestURI != string(h.Target) {
			t.Fatalf("request line: %q %q vs %q %q", req.Method, req.RequestURI, h.Method, h.Target)
		}
		if h.Host != nil && req.Host != string(h.Host) && req.URL.Host == "" {
			t.Fatalf("host %q vs %q", req.Host, h.Host)
		}
		if h.Chunked {
			if len(req.TransferEncoding) != 1 || req.TransferEncoding[0] != "chunked" {
				t.Fatalf("chunked vs %v", req.TransferEncoding)
			}
		} else if want := max(h.ContentLength, 0); req.ContentLength != want {
			t.Fatalf("content length %d vs %d", req.ContentLength, want)
		}
	})
}

func TestParseHeadSeeds(t *testing.T) {
	ok := map[int]bool{0: true, 1: true, 2: true, 3: true, 21: false, 26: false, 27: false, 28: true}
	for i, s := range headSeeds {
		var h Request
		err := ParseRequest([]byte(s), &h)
		if want, known := ok[i]; known && (err == nil) != want {
			t.Errorf("seed %d %q: err %v", i, s, err)
		}
		if i >= 4 && i <= 20 && i != 12 && err == nil { // 12: a tab is whitespace (OWS)
			t.Errorf("seed %d %q accepted", i, s)
		}
	}
}

func TestValidHostPort(t *testing.T) {
	for host, want := range map[string]bool{
		"a.api.example.test": true, "a.api.example.test:8080": true, "h:65535": true, "h:0": true,
		"h:": true, "[::1]": true, "[::1]:443": true, "127.0.0.1:80": true,
		"h:65536": false, "h:99999999": false, "h:80x": false, "h:-1": false, "[::1]:99999": false, "h:000080": false,
	} {
		if got := ValidHostPort(host); got != want {
			t.Errorf("ValidHostPort(%q) = %v, want %v", host, got, want)
		}
		var h Request
		err := ParseRequest([]byte("GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n"), &h)
		if (err == nil) != want {
			t.Errorf("ParseRequest with Host %q: %v, want ok=%v", host, err, want)
		}
	}
}
