package journal

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseSince reads a --since value: a duration back from now ("10m",
// "1h30m", "2d") or a time ("2025-01-02T15:04:05Z", "2025-01-02 15:04:05",
// "2025-01-02 15:04", "2025-01-02" in local time).
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if len(s) > 64 {
		return time.Time{}, fmt.Errorf("since is %d bytes long; want a duration (10m, 3d) or a time", len(s))
	}
	tooFar := func() (time.Time, error) {
		return time.Time{}, fmt.Errorf("since %q reaches back before 1970; at most %dd", s, maxSinceDays(now))
	}
	inRange := func(t time.Time) (time.Time, error) {
		if t.Before(time.Unix(0, 0)) {
			return tooFar()
		}
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseInt(d, 10, 64); err == nil && n >= 0 {
			if n > maxSinceDays(now) {
				return tooFar()
			}
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		} else if errors.Is(err, strconv.ErrRange) {
			return tooFar()
		}
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil {
		if d < 0 {
			d = -d
		}
		return inRange(now.Add(-d))
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return inRange(t)
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return inRange(t)
		}
	}
	return time.Time{}, fmt.Errorf("since %q: want a duration back from now (30s, 10m, 2h, 3d) or a time (2006-01-02 15:04:05, or RFC 3339)", s)
}

// maxSinceDays is how many days back a since may reach: to 1970.
func maxSinceDays(now time.Time) int64 {
	return int64(now.Sub(time.Unix(0, 0)) / (24 * time.Hour))
}
