package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/fleet"
	"github.com/tenhq/ten/router"
	"github.com/tenhq/ten/units"
)

// API calls about one instance that another node runs (restart, health,
// its row, storage, its logs) are forwarded to that node's API at its
// fleet addr, with the caller's token: a token of the fleet (made on any
// node, or any node's api_token file) authenticates there too. A weight is
// set through etcd instead (fleet_shared.go), and spawn and stop act
// through placement (fleet.go).

// fleetAPITarget returns the one instance r acts on, for the calls that
// are answered by the node that runs it.
func fleetAPITarget(r *http.Request) (units.Instance, bool) {
	name := ""
	switch p := r.URL.Path; {
	case p == "/api/logs" || p == "/api/logs/stream":
		v := r.URL.Query()
		name = v.Get("instance")
		if name == "" && v.Get("id") != "" {
			svc := v.Get("process")
			if svc == "" {
				svc = v.Get("service")
			}
			name = svc + ":" + v.Get("id")
		}
	case strings.HasPrefix(p, "/api/instances/"):
		id, sub, _ := strings.Cut(strings.TrimPrefix(p, "/api/instances/"), "/")
		switch {
		case r.Method == http.MethodGet && (sub == "" || sub == "health" || sub == "storage"),
			r.Method == http.MethodPost && sub == "restart":
			name = id
		}
	}
	if name == "" {
		return units.Instance{}, false
	}
	inst, err := units.ParseInstance(name)
	return inst, err == nil
}

// fleetForwardAPI answers r from the node that runs the instance it is
// about, when that is another node; it reports whether it answered.
func (s *Server) fleetForwardAPI(w http.ResponseWriter, r *http.Request) bool {
	inst, ok := fleetAPITarget(r)
	if !ok || s.reg.Has(inst) {
		return false
	}
	f := s.fleet
	p, placed, _, node, live := f.watch.Lookup(inst.String())
	if !placed || p.Node == f.node() {
		return false
	}
	ask := fmt.Sprintf("ten --server http://%s", node.Addr)
	switch {
	case r.Header.Get(router.HopHeader) != "":
		writeJSON(w, http.StatusConflict, APIError{Error: fmt.Sprintf("instance %s is placed on node %s, not on this node %s, which was sent the call by node %s; not forwarding again", inst, p.Node, f.node(), r.Header.Get(router.HopHeader))})
		return true
	case !live || node.Addr == "":
		writeJSON(w, http.StatusServiceUnavailable, APIError{Error: fmt.Sprintf("instance %s is placed on node %s, which is not live; ask again when it is back or the instance has moved", inst, p.Node)})
		return true
	}
	if pr := principalOf(r); pr.TokenID != auth.FileTokenID && !s.auth.store.IsShared(pr.TokenID) {
		writeJSON(w, http.StatusConflict, APIError{Error: fmt.Sprintf("instance %s runs on node %s; this token is known to this node only (its tokens.json), so the call is not forwarded: ask node %s (%s ...) with a token it knows", inst, p.Node, p.Node, ask)})
		return true
	}
	s.fleetAPIProxy().ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), apiFwdKey{}, node)))
	return true
}

type apiFwdKey struct{}

// fleetAPIProxy is the reverse proxy of forwarded API calls (one per node,
// so that its connections to the other nodes are kept alive).
func (s *Server) fleetAPIProxy() *httputil.ReverseProxy {
	apiProxy := &s.fleet.apiProxy
	apiProxy.once.Do(func() {
		tr := &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 2 * time.Minute, // a restart waits for systemd
		}
		apiProxy.p = &httputil.ReverseProxy{
			Transport:     tr,
			FlushInterval: -1, // log streams
			Rewrite: func(pr *httputil.ProxyRequest) {
				n := pr.In.Context().Value(apiFwdKey{}).(fleet.NodeInfo)
				pr.SetURL(&url.URL{Scheme: "http", Host: n.Addr})
				pr.Out.Host = n.Addr
				pr.SetXForwarded()
				pr.Out.Header.Set(router.HopHeader, s.fleet.node())
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				n := r.Context().Value(apiFwdKey{}).(fleet.NodeInfo)
				writeJSON(w, http.StatusBadGateway, APIError{Error: fmt.Sprintf("node %s (%s), which runs the instance, did not answer: %v", n.Node, n.Addr, err)})
			},
		}
	})
	return apiProxy.p
}

// fleetShareFileToken records this node's api_token file token (its
// SHA-256) in the fleet, so that the CLI of any node, and the calls one
// node forwards to another, are admin on every node.
func (s *Server) fleetShareFileToken(ctx context.Context) {
	id, rec, err := s.auth.store.NodeFileToken(s.fleet.node())
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
		err = fleet.PutNodeToken(ctx, s.fleet.cli, id, rec)
		cancel()
	}
	if err != nil {
		s.log.Warn("fleet: share this node's admin token; calls forwarded from other nodes with their admin token fail here", "err", err)
		return
	}
	if err := s.auth.store.AddShared(id, rec); err != nil {
		s.log.Warn("fleet: this node's admin token record", "err", err)
	}
}
