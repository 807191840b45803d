package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"
)

// HopHeader marks a request that one node's router forwarded to another
// (fleet mode). A router never forwards such a request again, so that two
// nodes that disagree about a placement cannot bounce it between them.
const HopHeader = "X-Ten-Fleet-Hop"

// Forward is Create's answer for an instance that another node of the
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

func (f *Forward) Error() string { return "instance runs on node " + f.Node + " (" + f.Addr + ")" }

type fwdKey struct{}

// newForwarder is the proxy to other nodes' routers: keep-alive
// connections per node, the client's address appended to
// X-Forwarded-For (so the app sees the first client first), the Host kept,
// and HopHeader set.
func newForwarder(r *Router) *httputil.ReverseProxy {
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
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = f.Addr
			pr.Out.Host = pr.In.Host
			if f.Host != "" {
				pr.Out.Host = f.Host
			}
			pr.Out.Header.Set(HopHeader, f.Node)
		},
		Transport:  t,
		BufferPool: bufferPool{},
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
			r.log.Warn("fleet: forward", "node", f.Node, "addr", f.Addr, "host", req.Host, "err", err)
			http.Error(w, fmt.Sprintf("node %s (%s), which runs this instance, did not answer: %v", f.Node, f.Addr, err), http.StatusBadGateway)
		},
	}
}

// fromPeer reports whether req came from another fleet node's router.
func (r *Router) fromPeer(req *http.Request) bool {
	if r.fleetPeer == nil || req.Header.Get(HopHeader) == "" {
		return false
	}
	ip, _, err := net.SplitHostPort(req.RemoteAddr)
	return err == nil && r.fleetPeer(ip)
}

// forward relays req to the node f names, unless req was forwarded to this
// node already (loop guard).
func (r *Router) forward(w http.ResponseWriter, req *http.Request, f *Forward) {
	if from := req.Header.Get(HopHeader); from != "" {
		http.Error(w, fmt.Sprintf("host %s: this node was sent the request as node %s, but the fleet says node %s runs it; not forwarding again", strings.ToLower(req.Host), from, f.Node), http.StatusBadGateway)
		return
	}
	r.fwdOnce.Do(func() { r.fwd = newForwarder(r) })
	ctx := context.WithValue(req.Context(), fwdKey{}, f)
	if f.Timeout > 0 {
		var stop func() bool
		ctx, stop = withHeadTimeout(ctx, f.Timeout)
		defer stop()
		w = &headStopper{ResponseWriter: w, stop: stop}
	}
	r.fwd.ServeHTTP(w, req.WithContext(ctx))
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
