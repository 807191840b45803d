package dashboard

import (
	"testing"
	"time"
	"unsafe"

	"github.com/tenhq/ten/units"
)

func TestHistoryRingIsBounded(t *testing.T) {
	h := NewHistory()
	inst := units.Instance{Service: "api", ID: "prod"}
	h.ObserveRequest(inst, 200, 10*time.Millisecond)
	h.ObserveRequest(inst, 502, 30*time.Millisecond)
	s := h.Series(inst, time.Now())
	if len(s) != Buckets {
		t.Fatalf("%d buckets", len(s))
	}
	last := s[len(s)-1]
	if last.Requests != 2 || last.Errors != 1 || last.AvgMs != 20 || last.MaxMs != 30 {
		t.Fatalf("last bucket %+v", last)
	}
	// Two hours later the old data is gone, and the ring did not grow.
	later := time.Now().Add(2 * time.Hour)
	h.Memory(inst, 42<<10, later)
	s = h.Series(inst, later)
	total := 0
	for _, b := range s {
		total += b.Requests
	}
	if total != 0 || s[len(s)-1].Memory != 42<<10 {
		t.Fatalf("after two hours: %d requests, memory %d", total, s[len(s)-1].Memory)
	}
	if n := unsafe.Sizeof(ring{}); n > 9*1024 {
		t.Errorf("a ring takes %d bytes", n)
	}
	h.Retain(map[units.Instance]bool{})
	if len(h.by) != 0 {
		t.Fatal("retain kept a gone instance")
	}
}

// A Recorder writes where ObserveRequest does, and finds its instance's
// ring again after Retain dropped it.
func TestRecorder(t *testing.T) {
	h := NewHistory()
	inst := units.Instance{Service: "api", ID: "a"}
	rc := h.Recorder(inst)
	for _, code := range []int{200, 200, 404, 502} {
		rc.ObserveRequest(code, 4*time.Millisecond)
	}
	h.ObserveRequest(inst, 200, 8*time.Millisecond)
	s := h.Series(inst, time.Now())
	if b := s[len(s)-1]; b.Requests != 5 || b.Errors != 1 || b.MaxMs != 8 {
		t.Fatalf("last bucket %+v, want 5 requests, 1 error, max 8 ms", b)
	}
	h.Retain(map[units.Instance]bool{})
	if s := h.Series(inst, time.Now()); s[len(s)-1].Requests != 0 {
		t.Fatalf("after Retain: %+v", s[len(s)-1])
	}
	rc.ObserveRequest(200, time.Millisecond)
	if s := h.Series(inst, time.Now()); s[len(s)-1].Requests != 1 {
		t.Fatalf("a request after Retain: %+v, want it recorded", s[len(s)-1])
	}
}
