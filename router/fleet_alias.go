package router

import "github.com/tenhq/ten/router/fleet"

// HopHeader marks a request that one node's router forwarded to another
// (fleet.HopHeader).
const HopHeader = fleet.HopHeader

// Forward is Options.Create's answer for an instance that another node of
// the fleet runs (fleet.Forward): the router relays the request to that
// node's router.
type Forward = fleet.Forward
