package logs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/systemd/journal"
)

// Read returns the entries q selects, oldest first (GET /api/logs).
func Read(r *http.Request, q journal.Query) ([]journal.Entry, error) {
	entries := []journal.Entry{}
	err := journal.Read(r.Context(), q, func(e journal.Entry) error {
		entries = append(entries, e)
		return nil
	})
	return entries, err
}

// Stream follows q as Server-Sent Events, one entry per "data:" line
// (event "log", id the journal cursor), until the client goes away or the
// journal read ends (an "error" event says why). The caller holds a slot.
func Stream(w http.ResponseWriter, r *http.Request, q journal.Query) {
	rc := http.NewResponseController(w)
	// The stream lives as long as the client: no write deadline.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Everything logged from the moment the client hears the stream is
	// open is in it, even if journalctl starts late.
	if q.FollowFrom.IsZero() {
		q.FollowFrom = time.Now()
	}
	fmt.Fprint(w, ": following the journal\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	ctx := r.Context()
	entries := make(chan journal.Entry, 64)
	done := make(chan error, 1)
	go func() {
		done <- journal.Read(ctx, q, func(e journal.Entry) error {
			select {
			case entries <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	// A comment now and then keeps proxies from closing an idle stream
	// and notices a client that went away.
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case e := <-entries:
			b, _ := json.Marshal(e)
			fmt.Fprintf(w, "event: log\nid: %s\ndata: %s\n\n", e.Cursor, b)
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				b, _ := json.Marshal(apitype.APIError{Error: "read logs: " + err.Error()})
				fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
				rc.Flush()
			}
			return
		case <-ctx.Done():
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// Follow reads q (a follow) into fn under one of slots' streams for p
// (the dashboard's log panel): an error says why no slot was free.
func Follow(ctx context.Context, slots *Slots, p auth.Principal, q journal.Query, fn func(journal.Entry) error) error {
	release, _, msg := slots.Acquire(p)
	if release == nil {
		return errors.New(msg)
	}
	defer release()
	return journal.Read(ctx, q, fn)
}
