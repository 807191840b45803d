// Package fastpath is the router's lean HTTP/1.1 loop (ConnServer): one
// goroutine per client connection that reads a request head
// (router/http1), routes it by its own Host (router.Router.Lookup), relays
// it on a pooled connection to the instance (router/upstream) and the
// response back, and repeats. Whatever it does not serve itself goes, with
// the connection and every byte read of it, to a fallback http.Server
// around router.Router.ServeHTTP.
package fastpath
