// Package fleet is the router's side of fleet mode: relaying a request for
// an instance that another node runs to that node's router (Forwarder),
// marking it (HopHeader) so that it is never relayed twice, and telling a
// peer router's request from a client's (FromPeer).
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/tenhq/ten/router/upstream"
)

// HopHeader marks a request that one node's router forwarded to another
// (fleet mode). A router never forwards such a request again, so that two
// nodes that disagree about a placement cannot bounce it between them.
const HopHeader = "X-Ten-Fleet-Hop"

// Forward is the router's Create hook's answer for an instance that another node of the
// fleet runs: the router relays the request to that node's router.
type Forward struct {
	// Node names the node; Addr is its router's host:port.
	Node, Addr string
	// Timeout bounds the relayed request until its response head (the
	// owner's own wake and request timeouts, so that a node lost with a
	// request in flight costs that request no more); 0 is none.
	Timeout time.Duration
	// Host, when set, replaces the request's Host: a {service}.DOMAIN
	// request goes to the one instance the fleet picked on that node.
	Host string
}

// Error says where the instance runs.
func (f *Forward) Error() string { return "instance runs on node " + f.Node + " (" + f.Addr + ")" }

type fwdKey struct{}

// Forwarder relays requests to other nodes' routers.
type Forwarder struct {
	log     *slog.Logger
	trusted func(remoteAddr string) bool
	auth    *PeerAuth
	once    sync.Once
	proxy   *httputil.ReverseProxy
}

// NewForwarder returns a Forwarder; its connections are made at first use.
// trusted (settings.trusted_proxies; nil: none) reports a proxy in front
// of ten by a request's RemoteAddr: the X-Forwarded-* headers of a request
// it sent are passed on, so that the other node and its app see the
// proxy's client, as this node's own apps do. auth is the fleet's peer
// token, shown to the other node (AuthHeader) so that it takes the client
// this node names.
func NewForwarder(log *slog.Logger, trusted func(remoteAddr string) bool, auth *PeerAuth) *Forwarder {
	return &Forwarder{log: log, trusted: trusted, auth: auth}
}

// newProxy is the proxy to other nodes' routers: keep-alive
// connections per node, the client's address appended to
// X-Forwarded-For (so the app sees the first client first; behind a
// trusted proxy, the proxy's X-Forwarded-* kept), the Host kept, and
// HopHeader and AuthHeader set.
func newProxy(log *slog.Logger, trusted func(remoteAddr string) bool, auth *PeerAuth) *httputil.ReverseProxy {
	t := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			f := pr.In.Context().Value(fwdKey{}).(*Forward)
			SetXForwarded(pr, trusted != nil && trusted(pr.In.RemoteAddr))
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = f.Addr
			pr.Out.Host = pr.In.Host
			if f.Host != "" {
				pr.Out.Host = f.Host
			}
			pr.Out.Header.Set(HopHeader, f.Node)
			if t := auth.Token(); t != "" {
				pr.Out.Header.Set(AuthHeader, t)
			} else {
				pr.Out.Header.Del(AuthHeader)
			}
		},
		Transport:  t,
		BufferPool: upstream.BufferPool{},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			f := req.Context().Value(fwdKey{}).(*Forward)
			if errors.Is(context.Cause(req.Context()), context.DeadlineExceeded) {
				http.Error(w, fmt.Sprintf("node %s (%s), which runs this instance, did not answer within %s", f.Node, f.Addr, f.Timeout), http.StatusGatewayTimeout)
				return
			}
			if errors.Is(err, context.Canceled) {
				w.WriteHeader(499) // the client went away
				return
			}
			log.Warn("fleet: forward", "node", f.Node, "addr", f.Addr, "host", req.Host, "err", err)
			http.Error(w, fmt.Sprintf("node %s (%s), which runs this instance, did not answer: %v", f.Node, f.Addr, err), http.StatusBadGateway)
		},
	}
}

// SetXForwarded sets pr's X-Forwarded-For, -Host and -Proto as
// ProxyRequest.SetXForwarded does, the client's address appended; when
// kept (the request came from a trusted proxy or another node's router),
// the sender's X-Forwarded-For is kept before it, and its
// X-Forwarded-Host, X-Forwarded-Proto and Forwarded kept as they are
// (ReverseProxy drops them all before Rewrite).
func SetXForwarded(pr *httputil.ProxyRequest, kept bool) {
	if kept {
		pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	}
	pr.SetXForwarded()
	if kept {
		for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := pr.In.Header.Get(h); v != "" {
				pr.Out.Header.Set(h, v)
			}
		}
		if v := pr.In.Header["Forwarded"]; len(v) > 0 {
			pr.Out.Header["Forwarded"] = v
		}
	}
}

// FromPeer reports whether req came from another fleet node's router:
// it carries HopHeader and the fleet's token (auth; nil: no fleet), and
// isPeer (nil: no fleet) knows its address.
func FromPeer(req *http.Request, isPeer func(ip string) bool, auth *PeerAuth) bool {
	if isPeer == nil || req.Header.Get(HopHeader) == "" || !auth.ValidRequest(req) {
		return false
	}
	ip, _, err := net.SplitHostPort(req.RemoteAddr)
	return err == nil && isPeer(ip)
}

// Forward relays req to the node f names, unless req was forwarded to this
// node already (loop guard).
func (fw *Forwarder) Forward(w http.ResponseWriter, req *http.Request, f *Forward) {
	if from := req.Header.Get(HopHeader); from != "" {
		http.Error(w, fmt.Sprintf("host %s: this node was sent the request as node %s, but the fleet says node %s runs it; not forwarding again", strings.ToLower(req.Host), from, f.Node), http.StatusBadGateway)
		return
	}
	fw.once.Do(func() { fw.proxy = newProxy(fw.log, fw.trusted, fw.auth) })
	ctx := context.WithValue(req.Context(), fwdKey{}, f)
	if f.Timeout > 0 {
		var stop func() bool
		ctx, stop = withHeadTimeout(ctx, f.Timeout)
		defer stop()
		w = &headStopper{ResponseWriter: w, stop: stop}
	}
	fw.proxy.ServeHTTP(w, req.WithContext(ctx))
}

// withHeadTimeout is a context that ends after d unless stop is called
// first (when the response head arrives: a long body may stream on).
func withHeadTimeout(parent context.Context, d time.Duration) (context.Context, func() bool) {
	ctx, cancel := context.WithCancelCause(parent)
	t := time.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return ctx, func() bool { return t.Stop() }
}

// headStopper stops the head timeout once the response head is written.
type headStopper struct {
	http.ResponseWriter
	stop func() bool
}

func (h *headStopper) WriteHeader(code int) {
	h.stop()
	h.ResponseWriter.WriteHeader(code)
}

func (h *headStopper) Unwrap() http.ResponseWriter { return h.ResponseWriter }
