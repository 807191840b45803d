// Package apitype holds the wire types of ten's admin API: the JSON bodies
// that `ten serve` answers and the ten CLI (and package client) sends and
// reads. It imports nothing of the daemon, so a client of the API needs
// nothing but this package.
package apitype

import (
	"encoding/json"
	"net/url"
	"strconv"
	"time"
)

// APIError is the JSON body of every error the API returns.
type APIError struct {
	Error string `json:"error"`
}

// Row is one line of `ten ps` (GET /api/instances).
type Row struct {
	Instance string `json:"instance"`
	// ID is tenement's name for Instance ("api:u1").
	ID        string    `json:"id"`
	State     string    `json:"state"`
	Detail    string    `json:"detail,omitempty"`
	Socket    string    `json:"socket"`
	Since     time.Time `json:"since,omitzero"`
	UptimeSec float64   `json:"uptime_seconds"`
	// UptimeSecs is UptimeSec in whole seconds, tenement's name.
	UptimeSecs  uint64  `json:"uptime_secs"`
	IdleSec     float64 `json:"idle_seconds"`
	MemoryBytes uint64  `json:"memory_bytes"`
	CPUNSec     uint64  `json:"cpu_nsec"`
	Weight      int     `json:"weight"`
	// Health is one of the Health* states.
	Health string `json:"health"`
	// Restarts counts the service's restarts since the instance was made:
	// crashes systemd restarted, ten's restarts after failed health checks
	// and restarts by hand (`ten restart`); sleeps and wakes are not
	// restarts.
	Restarts uint32 `json:"restarts"`
	Inflight int    `json:"inflight"`
	Port     int    `json:"port"`
	// Address is 127.0.0.1:PORT when the app last answered there, on the
	// host's loopback (where a local client reaches it directly, as
	// tenement's "Listening on" line says); "" when it listens on its
	// socket, in a namespace of its own, or has not answered yet.
	Address string `json:"address,omitempty"`
	// OOMKills counts the kernel's OOM kills at memory_limit_mb; LastExit
	// is how the app last ended ("oom-kill", "exit 1", "signal SEGV").
	OOMKills uint64 `json:"oom_kills"`
	LastExit string `json:"last_exit,omitempty"`
	// StorageBytes is what the storage_quota_mb file system holds, of
	// StorageQuotaBytes (0: no quota).
	StorageBytes      uint64 `json:"storage_bytes"`
	StorageQuotaBytes uint64 `json:"storage_quota_bytes"`
	// Node is the fleet node the instance is placed on (fleet mode only).
	Node string `json:"node,omitempty"`
	// Existed says that a spawn found the instance there already and left
	// it as it was (a spawn answers success then, as tenement's does).
	Existed bool `json:"existed,omitempty"`
}

// MarshalJSON writes r with tenement's names for two of its fields as
// well: idle_secs (IdleSec in whole seconds) and storage_used_bytes
// (StorageBytes), so that scripts written against tenement's GET
// /api/instances keep working. Reading a row back ignores them.
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row // without this method
	return json.Marshal(struct {
		plain
		IdleSecs         uint64 `json:"idle_secs"`
		StorageUsedBytes uint64 `json:"storage_used_bytes"`
	}{plain(r), uint64(max(r.IdleSec, 0)), r.StorageBytes})
}

// States shown by ps (Row.State).
const (
	StateRunning  = "running"
	StateStarting = "starting"
	StateSleeping = "sleeping"
	StateFailed   = "failed"
	// StateFrozen: the service runs but its cgroup is frozen (sleep =
	// "freeze"); the next request thaws it.
	StateFrozen = "frozen"
	// StateRemote: fleet mode, the instance is placed on another node
	// (Row.Node), which knows its state.
	StateRemote = "remote"
)

// Health states of an instance (Row.Health, Health.Health).
const (
	HealthUnknown   = "unknown"   // not checked yet, or starting
	HealthHealthy   = "healthy"   // last check passed (or: systemd says active, without health)
	HealthDegraded  = "degraded"  // the last few checks failed, not yet enough to restart
	HealthUnhealthy = "unhealthy" // enough checks in a row failed, or the service crashed
	HealthSleeping  = "sleeping"  // the service does not run; not checked, so as not to wake it
	HealthFailed    = "failed"    // restarted max_restarts times within restart_window; stopped
)

// HealthStates lists every health state (the metric has one series each).
var HealthStates = []string{HealthUnknown, HealthHealthy, HealthDegraded, HealthUnhealthy, HealthSleeping, HealthFailed}

// Restart reasons (RestartEvent.Reason, label of ten_instance_restarts_total).
const (
	RestartCrash  = "crash"  // systemd restarted the service after it exited (Restart=)
	RestartHealth = "health" // ten restarted it after failed health checks
	RestartManual = "manual" // restarted by hand: ten restart, POST /api/instances/{id}/restart
)

// RestartEvent is one restart ten counted.
type RestartEvent struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Health is the answer of GET /api/instances/{id}/health and `ten health`.
type Health struct {
	Instance string `json:"instance"`
	// Health is one of the Health* states.
	Health string `json:"health"`
	Detail string `json:"detail,omitempty"`
	// Check says how health is judged: "GET /health" or "systemd state".
	Check string `json:"check"`
	// State is the instance's state as ps shows it.
	State               string         `json:"state"`
	ConsecutiveFailures int            `json:"consecutive_failures"`
	LastCheck           time.Time      `json:"last_check,omitzero"`
	LastHealthy         time.Time      `json:"last_healthy,omitzero"`
	Restarts            []RestartEvent `json:"restarts"`
	RestartsInWindow    int            `json:"restarts_in_window"`
	MaxRestarts         int            `json:"max_restarts"`
	RestartWindowSec    int            `json:"restart_window_seconds"`
	NextRestart         time.Time      `json:"next_restart,omitzero"`
	BackoffMs           int64          `json:"backoff_ms,omitempty"`
	Failed              string         `json:"failed,omitempty"`
}

// DeployRequest is the body of POST /api/deploy.
type DeployRequest struct {
	Service string `json:"service"`
	// Process is tenement's name for Service.
	Process string `json:"process,omitempty"`
	Version string `json:"version"`
	// Weight is the new instance's weight once healthy (default 100).
	Weight *int `json:"weight,omitempty"`
	// Timeout is how long to wait for the first passing health check, in
	// seconds (default 30; 1 to 3600).
	Timeout int `json:"timeout,omitempty"`
	// Replace moves all traffic to the new version: the other instances of
	// the service get weight 0, their requests in flight finish, then they
	// are removed.
	Replace bool `json:"replace,omitempty"`
}

// DeployResult is the answer of POST /api/deploy.
type DeployResult struct {
	Instance string `json:"instance"`
	// Socket is the instance's socket path, and Status "healthy", as in
	// tenement's answer.
	Socket       string   `json:"socket"`
	Status       string   `json:"status"`
	Weight       int      `json:"weight"`
	HealthyAfter float64  `json:"healthy_after_seconds"`
	Replaced     []string `json:"replaced,omitempty"`
	// Existed says that the version existed before this deploy: it was
	// woken if it slept and given its weight once healthy.
	Existed bool `json:"existed,omitempty"`
	Row     Row  `json:"row"`
}

// RouteRequest is the body of POST /api/route.
type RouteRequest struct {
	Service string `json:"service"`
	Process string `json:"process,omitempty"`
	From    string `json:"from"`
	To      string `json:"to"`
}

// RouteResult is the answer of POST /api/route.
type RouteResult struct {
	Service string `json:"service"`
	From    string `json:"from"`
	To      string `json:"to"`
	// Weight is To's weight now: its own plus From's, at most 100, or 100
	// when neither had any.
	Weight int `json:"weight"`
	// FromInstance, ToInstance, FromWeight and ToWeight are tenement's
	// names for the same answer (FromWeight is always 0), for its scripts.
	FromInstance string `json:"from_instance"`
	ToInstance   string `json:"to_instance"`
	FromWeight   int    `json:"from_weight"`
	ToWeight     int    `json:"to_weight"`
}

// Feature names, as GET /api/features reports them.
const (
	FeatureAccounting = "activity-accounting"
	FeatureL4Dispatch = "l4-dispatch"
	FeatureFreeze     = "freeze"
	FeaturePortGuard  = "port-guard"
)

// Feature is one optional capability of ten serve: on or off, and what it
// does or why it is off. `ten doctor` prints these.
type Feature struct {
	Name   string `json:"name"`
	On     bool   `json:"on"`
	Detail string `json:"detail"`
}

// Storage is the answer of GET /api/instances/{id}/storage.
type Storage struct {
	Instance string `json:"instance"`
	// Path is where the instance's files really are: with DynamicUser
	// systemd keeps them under /var/lib/private and links the public path.
	Path string `json:"path"`
	// Bytes is the apparent size of the files; DiskBytes what they occupy.
	Bytes     int64 `json:"bytes"`
	DiskBytes int64 `json:"disk_bytes"`
	Files     int64 `json:"files"`
	// QuotaBytes is storage_quota_mb (0 = none); UsageRatio is Bytes/QuotaBytes.
	QuotaBytes int64   `json:"quota_bytes"`
	UsageRatio float64 `json:"usage_ratio"`
	// UsedBytes (Bytes) and UsagePercent (UsageRatio × 100; null without a
	// quota) are tenement's names for them.
	UsedBytes    int64    `json:"used_bytes"`
	UsagePercent *float64 `json:"usage_percent"`
}

// Token is an API token as GET /api/tokens lists it (never its secret).
type Token struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	LastUsed    time.Time `json:"last_used,omitzero"`
}

// Admin reports whether this is an admin token (it belongs to no tenant).
func (t Token) Admin() bool { return t.Tenant == "" }

// TokenRequest is the body of POST /api/tokens: a tenant's token, or an
// admin token asked for explicitly with Admin (a body that names no tenant
// is refused, never taken for an admin token).
type TokenRequest struct {
	// Tenant scopes the token to instances SERVICE:TENANT.
	Tenant string `json:"tenant,omitempty"`
	// Admin must be true, and Tenant empty, for an admin token.
	Admin bool `json:"admin,omitempty"`
	// Description is free text shown by token list (at most 200 characters).
	Description string `json:"description,omitempty"`
}

// NewToken is the answer of POST /api/tokens: the only time the secret is shown.
type NewToken struct {
	Token
	Secret string `json:"token"`
}

// MaxLogLimit bounds ?limit= of GET /api/logs so one request cannot pull a
// whole journal into memory.
const MaxLogLimit = 10000

// LogsPath is the API path and query of a log request (used by the CLI).
func LogsPath(stream bool, instance, search, since, level string, limit int) string {
	v := url.Values{}
	if instance != "" {
		v.Set("instance", instance)
	}
	if search != "" {
		v.Set("search", search)
	}
	if since != "" {
		v.Set("since", since)
	}
	if level != "" {
		v.Set("level", level)
	}
	if limit >= 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	p := "/api/logs"
	if stream {
		p += "/stream"
	}
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return p
}

// RequestStats are an instance's request counters as GET /api/telemetry
// shows them: requests the router relayed, and their duration's sum and
// estimated 99th percentile (from the histogram's buckets), in seconds.
type RequestStats struct {
	Requests    uint64
	DurationSum float64
	P99         float64
}

// Telemetry is GET /api/telemetry, in tenement's shape: a summary and a
// row per instance the token may see.
type Telemetry struct {
	Summary   TelemetrySummary    `json:"summary"`
	Instances []TelemetryInstance `json:"instances"`
}

// TelemetrySummary counts the instances and requests of a Telemetry.
type TelemetrySummary struct {
	TotalInstances   int    `json:"total_instances"`
	HealthyInstances int    `json:"healthy_instances"`
	TotalRequests    uint64 `json:"total_requests"`
}

// TelemetryInstance is one instance of a Telemetry (tenement's fields, and
// ten's state).
type TelemetryInstance struct {
	ID                   string  `json:"id"`
	Process              string  `json:"process"`
	Instance             string  `json:"instance"`
	State                string  `json:"state"`
	Health               string  `json:"health"`
	UptimeSecs           uint64  `json:"uptime_secs"`
	IdleSecs             uint64  `json:"idle_secs"`
	Restarts             uint32  `json:"restarts"`
	Weight               int     `json:"weight"`
	RequestsTotal        uint64  `json:"requests_total"`
	RequestDurationAvgMs float64 `json:"request_duration_avg_ms"`
	RequestDurationP99Ms float64 `json:"request_duration_p99_ms"`
	StorageUsedBytes     uint64  `json:"storage_used_bytes"`
	StorageQuotaBytes    uint64  `json:"storage_quota_bytes"`
}
