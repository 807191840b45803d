package api

import (
	"math"
	"net/http"
	"strings"

	"github.com/tenhq/ten/apitype"
)

// registerTelemetry adds GET /api/telemetry: tenement's JSON summary of the
// instances and their requests. tenement serves it to anyone; ten asks for
// a token like the rest of /api/, and a tenant token sees its own
// instances only (the summary counts those).
func (a *API) registerTelemetry(api *http.ServeMux) {
	api.HandleFunc("GET /api/telemetry", func(w http.ResponseWriter, r *http.Request) {
		rows, err := a.b.List(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		var stats map[string]apitype.RequestStats
		if a.requestStats != nil {
			stats = a.requestStats()
		}
		writeJSON(w, http.StatusOK, telemetry(scopeRows(r, rows), stats))
	})
}

// telemetry builds GET /api/telemetry's answer from rows and their request
// counters (stats, by instance name; an instance without any has zeros).
func telemetry(rows []apitype.Row, stats map[string]apitype.RequestStats) apitype.Telemetry {
	out := apitype.Telemetry{Instances: make([]apitype.TelemetryInstance, 0, len(rows))}
	for _, row := range rows {
		process, id, _ := strings.Cut(row.Instance, ":")
		st := stats[row.Instance]
		ti := apitype.TelemetryInstance{
			ID: row.Instance, Process: process, Instance: id, State: row.State, Health: row.Health,
			UptimeSecs: row.UptimeSecs, IdleSecs: uint64(max(row.IdleSec, 0)), Restarts: row.Restarts, Weight: row.Weight,
			RequestsTotal: st.Requests, RequestDurationP99Ms: ms(st.P99),
			StorageUsedBytes: row.StorageBytes, StorageQuotaBytes: row.StorageQuotaBytes,
		}
		if st.Requests > 0 {
			ti.RequestDurationAvgMs = ms(st.DurationSum / float64(st.Requests))
		}
		out.Instances = append(out.Instances, ti)
		out.Summary.TotalInstances++
		if row.Health == apitype.HealthHealthy {
			out.Summary.HealthyInstances++
		}
		out.Summary.TotalRequests += st.Requests
	}
	return out
}

// ms is seconds in milliseconds, rounded to the microsecond.
func ms(sec float64) float64 { return math.Round(sec*1e6) / 1e3 }
