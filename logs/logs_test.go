package logs

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/tenhq/ten/auth"
	"github.com/tenhq/ten/strictjson"
	"github.com/tenhq/ten/units"
)

// Tenants share MaxStreams-AdminStreams slots, each at most
// MaxTenantStreams; the last AdminStreams stay an admin's.
func TestSlots(t *testing.T) {
	var s Slots
	var releases []func()
	for i := 0; i < MaxTenantStreams; i++ {
		rel, _, msg := s.Acquire(auth.Principal{Tenant: "acme"})
		if rel == nil {
			t.Fatalf("tenant stream %d refused: %s", i, msg)
		}
		releases = append(releases, rel)
	}
	if rel, status, _ := s.Acquire(auth.Principal{Tenant: "acme"}); rel != nil || status != http.StatusTooManyRequests {
		t.Fatalf("tenant over its share: status %d, want 429", status)
	}
	for i := 1; len(releases) < MaxStreams-AdminStreams; i++ {
		rel, _, msg := s.Acquire(auth.Principal{Tenant: "t" + string(rune('a'+i%26)) + string(rune('a'+i/26))})
		if rel == nil {
			t.Fatalf("tenant stream %d refused: %s", len(releases), msg)
		}
		releases = append(releases, rel)
	}
	if rel, status, _ := s.Acquire(auth.Principal{Tenant: "other"}); rel != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("tenants past their slots: status %d, want 503", status)
	}
	for i := 0; i < AdminStreams; i++ {
		rel, _, msg := s.Acquire(auth.Principal{})
		if rel == nil {
			t.Fatalf("admin stream %d refused: %s", i, msg)
		}
		releases = append(releases, rel)
	}
	if rel, status, _ := s.Acquire(auth.Principal{}); rel != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("all streams open: status %d, want 503", status)
	}
	releases[0]()
	releases[0]() // a release counts once
	if rel, _, msg := s.Acquire(auth.Principal{Tenant: "acme"}); rel == nil {
		t.Fatalf("after a release: %s", msg)
	}
	if rel, _, _ := s.Acquire(auth.Principal{Tenant: "acme"}); rel != nil {
		t.Fatal("a double release freed two slots")
	}
}

func TestParseQuery(t *testing.T) {
	deny := func(inst units.Instance) string {
		if inst.ID != "acme" {
			return "not yours"
		}
		return ""
	}
	q, err := ParseQuery(url.Values{"process": {"api"}, "id": {"acme"}, "level": {"stderr"}, "limit": {"5"}}, false, "acme", deny)
	if err != nil || q.Instance.String() != "api:acme" || q.Stream != "stderr" || q.Limit != 5 || q.Tenant != "acme" {
		t.Fatalf("ParseQuery = %+v, %v", q, err)
	}
	if q, err := ParseQuery(url.Values{}, true, "", deny); err != nil || q.Limit != 10 || !q.Follow {
		t.Fatalf("follow default: %+v, %v", q, err)
	}
	if _, err := ParseQuery(url.Values{"instance": {"api:other"}}, false, "acme", deny); err == nil {
		t.Fatal("another tenant's instance was allowed")
	} else if msg, ok := IsDenied(err); !ok || msg != "not yours" {
		t.Fatalf("denied: %v", err)
	}
	for _, v := range []url.Values{
		{"level": {"debug"}}, {"limit": {"-1"}}, {"limit": {"10001"}}, {"instance": {"no colon"}}, {"process": {"../x"}}, {"since": {"yesterday-ish"}},
	} {
		if _, err := ParseQuery(v, false, "", deny); !errors.Is(err, strictjson.ErrBadInput) {
			t.Errorf("%v: err %v, want bad input", v, err)
		}
	}
}

// Reads (GET /api/logs) have bounds of their own: a tenant cannot run more
// than MaxTenantReads journalctl reads at once, nor tenants take an admin's.
func TestReadSlots(t *testing.T) {
	s := NewReadSlots()
	var releases []func()
	for range MaxTenantReads {
		rel, _, msg := s.Acquire(auth.Principal{Tenant: "acme"})
		if rel == nil {
			t.Fatalf("tenant read refused: %s", msg)
		}
		releases = append(releases, rel)
	}
	if rel, status, msg := s.Acquire(auth.Principal{Tenant: "acme"}); rel != nil || status != http.StatusTooManyRequests || !strings.Contains(msg, "log reads") {
		t.Fatalf("tenant over its reads: status %d %q, want 429", status, msg)
	}
	for i := 0; len(releases) < MaxReads-AdminReads; i++ {
		rel, _, msg := s.Acquire(auth.Principal{Tenant: "t" + strconv.Itoa(i/MaxTenantReads)})
		if rel == nil {
			t.Fatalf("tenant read %d refused: %s", len(releases), msg)
		}
		releases = append(releases, rel)
	}
	if rel, status, _ := s.Acquire(auth.Principal{Tenant: "other"}); rel != nil || status != http.StatusServiceUnavailable {
		t.Fatalf("tenants past their reads: status %d, want 503", status)
	}
	if rel, _, msg := s.Acquire(auth.Principal{}); rel == nil {
		t.Fatalf("admin read refused with the tenants' reads all taken: %s", msg)
	}
}
