package server

import "github.com/tenhq/ten/apitype"

// The API's wire types live in package apitype, which the CLI and package
// client share without importing the daemon; these names keep them at hand.
type (
	// Row is one line of `ten ps`.
	Row = apitype.Row
	// Health is the answer of GET /api/instances/{id}/health.
	Health = apitype.Health
	// RestartEvent is one restart ten counted.
	RestartEvent = apitype.RestartEvent
	// DeployRequest is the body of POST /api/deploy.
	DeployRequest = apitype.DeployRequest
	// DeployResult is the answer of POST /api/deploy.
	DeployResult = apitype.DeployResult
	// RouteRequest is the body of POST /api/route.
	RouteRequest = apitype.RouteRequest
	// RouteResult is the answer of POST /api/route.
	RouteResult = apitype.RouteResult
	// Feature is one optional capability of ten serve.
	Feature = apitype.Feature
	// Storage is the answer of GET /api/instances/{id}/storage.
	Storage = apitype.Storage
	// APIError is the JSON body of every error the API returns.
	APIError = apitype.APIError
	// NewToken is the answer of POST /api/tokens.
	NewToken = apitype.NewToken
)

// States shown by ps.
const (
	StateRunning  = apitype.StateRunning
	StateStarting = apitype.StateStarting
	StateSleeping = apitype.StateSleeping
	StateFailed   = apitype.StateFailed
	StateFrozen   = apitype.StateFrozen
	StateRemote   = apitype.StateRemote
)

// Health states (see health.go for how ten judges them).
const (
	HealthUnknown   = apitype.HealthUnknown
	HealthHealthy   = apitype.HealthHealthy
	HealthDegraded  = apitype.HealthDegraded
	HealthUnhealthy = apitype.HealthUnhealthy
	HealthSleeping  = apitype.HealthSleeping
	HealthFailed    = apitype.HealthFailed
)

// HealthStates lists every health state (the metric has one series each).
var HealthStates = apitype.HealthStates

// Restart reasons (label of ten_instance_restarts_total).
const (
	RestartCrash  = apitype.RestartCrash
	RestartHealth = apitype.RestartHealth
)

// Feature names, as Features reports them.
const (
	FeatureAccounting = apitype.FeatureAccounting
	FeatureL4Dispatch = apitype.FeatureL4Dispatch
	FeatureFreeze     = apitype.FeatureFreeze
)

// MaxLogLimit bounds ?limit= so one request cannot pull a whole journal
// into memory.
const MaxLogLimit = apitype.MaxLogLimit

// LogsPath is the API path and query of a log request.
var LogsPath = apitype.LogsPath
