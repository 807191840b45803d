// Package client is the HTTP client of ten's admin API, used by every `ten`
// command except serve.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Client talks to one ten server.
type Client struct {
	Server string
	Token  string
	HTTP   *http.Client
}

// TokenFrom returns the first token found: flag, TENEMENT_TOKEN (kong fills
// the flag from it), then {dataDir}/api_token.
func TokenFrom(flag, dataDir string) string {
	if flag != "" {
		return flag
	}
	if dataDir != "" {
		if b, err := os.ReadFile(filepath.Join(dataDir, "api_token")); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}

// New returns a client for server: http://host:port, https://..., or
// host:port alone (taken as http://host:port).
func New(server, token string) *Client {
	if !strings.Contains(server, "://") {
		// host:port alone (--server localhost:8080), as curl takes it.
		server = "http://" + server
	}
	return &Client{Server: strings.TrimRight(server, "/"), Token: token, HTTP: &http.Client{Timeout: 2 * time.Minute}}
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Message string
}

// Error returns the server's message.
func (e *Error) Error() string { return e.Message }

// Do sends a request with a JSON body (nil for none) and decodes a JSON answer into out.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Server+path, rd)
	if err != nil {
		return fmt.Errorf("server %q: %w", c.Server, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	var connected atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	}))
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if connected.Load() && ue != nil && ue.Timeout() {
			// It is running: it took the request and is still at it.
			within := "in time"
			if c.HTTP.Timeout > 0 {
				within = "within " + c.HTTP.Timeout.String()
			}
			return fmt.Errorf("ten serve at %s did not answer %s %s %s; gave up waiting (ten ps and ten logs show where things stand)", c.Server, method, path, within)
		}
		return fmt.Errorf("cannot reach ten serve at %s: %v (is it running? set --server or TENEMENT_SERVER)", c.Server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &Error{Status: resp.StatusCode, Message: e.Error}
		}
		return &Error{Status: resp.StatusCode, Message: fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))}
	}
	// An empty answer (204, as tenement's DELETE) leaves out as it was.
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
		}
	}
	return nil
}

// InstancePath escapes an instance name for a URL path.
func InstancePath(inst string) string { return "/api/instances/" + url.PathEscape(inst) }
