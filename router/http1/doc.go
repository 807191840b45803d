// Package http1 parses HTTP/1.x framing for the router's fast path: request
// heads from clients (ParseRequest), response heads and chunk lines from
// instances (ParseResponse, ReadResponse, ParseChunkSize). Both sides are
// tenants, so both are parsed strictly: whatever a lenient parser behind the
// proxy could read differently (bare LF, obs-fold, duplicated or conflicting
// framing headers) is refused. Parsing allocates nothing: the results'
// slices point into the buffer parsed.
package http1
