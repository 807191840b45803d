package fleetnode

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/fleet"
	"github.com/tenhq/ten/router"
	rfleet "github.com/tenhq/ten/router/fleet"
	"github.com/tenhq/ten/strictjson"
	"github.com/tenhq/ten/units"
)

// API calls about one instance that another node runs (restart, health,
// its row, storage, its logs) are forwarded to that node's API at its
// fleet addr, with the caller's token: a token of the fleet (made on any
// node, or any node's api_token file) authenticates there too. A weight is
// set through etcd instead (shared.go), and spawn and stop act
// through placement (node.go).

// apiTarget returns the one instance r acts on, for the calls that
// are answered by the node that runs it.
func apiTarget(r *http.Request) (units.Instance, bool) {
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

// ForwardAPI answers r, a call of pr that the API authorized, from the
// node that runs the instance it is about, when that is another node; it
// reports whether it answered.
func (n *Node) ForwardAPI(w http.ResponseWriter, r *http.Request, pr auth.Principal) bool {
	inst, ok := apiTarget(r)
	if !ok || n.local.Has(inst) {
		return false
	}
	f := n
	p, placed, _, node, live := f.watch.Lookup(inst.String())
	if !placed || p.Node == f.Name() {
		return false
	}
	ask := fmt.Sprintf("ten --server http://%s", node.Addr)
	switch {
	case r.Header.Get(router.HopHeader) != "":
		writeJSON(w, http.StatusConflict, apitype.APIError{Error: fmt.Sprintf("instance %s is placed on node %s, not on this node %s, which was sent the call by node %s; not forwarding again", inst, p.Node, f.Name(), r.Header.Get(router.HopHeader))})
		return true
	case !live || node.Addr == "":
		writeJSON(w, http.StatusServiceUnavailable, apitype.APIError{Error: fmt.Sprintf("instance %s is placed on node %s, which is not live; ask again when it is back or the instance has moved", inst, p.Node)})
		return true
	}
	if st := n.local.Tokens(); pr.TokenID != auth.FileTokenID && (st == nil || !st.IsShared(pr.TokenID)) {
		writeJSON(w, http.StatusConflict, apitype.APIError{Error: fmt.Sprintf("instance %s runs on node %s; this token is known to this node only (its tokens.json), so the call is not forwarded: ask node %s (%s ...) with a token it knows", inst, p.Node, p.Node, ask)})
		return true
	}
	n.apiProxyFor().ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), apiFwdKey{}, node)))
	return true
}

type apiFwdKey struct{}

// apiProxyFor is the reverse proxy of forwarded API calls (one per node,
// so that its connections to the other nodes are kept alive).
func (n *Node) apiProxyFor() *httputil.ReverseProxy {
	apiProxy := &n.apiProxy
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
				to := pr.In.Context().Value(apiFwdKey{}).(fleet.NodeInfo)
				pr.SetURL(&url.URL{Scheme: "http", Host: to.Addr})
				pr.Out.Host = to.Addr
				pr.SetXForwarded()
				pr.Out.Header.Set(router.HopHeader, n.Name())
				pr.Out.Header.Set(rfleet.AuthHeader, n.peerAuth.Token())
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				to := r.Context().Value(apiFwdKey{}).(fleet.NodeInfo)
				writeJSON(w, http.StatusBadGateway, apitype.APIError{Error: fmt.Sprintf("node %s (%s), which runs the instance, did not answer: %v", to.Node, to.Addr, err)})
			},
		}
	})
	return apiProxy.p
}

// shareFileToken records this node's api_token file token (its
// SHA-256) in the fleet, so that the CLI of any node, and the calls one
// node forwards to another, are admin on every node.
func (n *Node) shareFileToken(ctx context.Context) {
	st := n.local.Tokens()
	if st == nil {
		return
	}
	id, rec, err := st.NodeFileToken(n.Name())
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
		err = fleet.PutNodeToken(ctx, n.cli, id, rec)
		cancel()
	}
	if err != nil {
		n.log.Warn("fleet: share this node's admin token; calls forwarded from other nodes with their admin token fail here", "err", err)
		return
	}
	if err := st.AddShared(id, rec); err != nil {
		n.log.Warn("fleet: this node's admin token record", "err", err)
	}
}

// writeJSON answers an error as the API does (apitype.APIError, clipped).
func writeJSON(w http.ResponseWriter, status int, e apitype.APIError) {
	e.Error = strictjson.ClipError(e.Error)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}
