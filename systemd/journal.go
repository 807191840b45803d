package systemd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/tenhq/ten/units"
)

// Streams of a log entry. journald does not record which file descriptor a
// line came from; ten starts apps under `systemd-cat --stderr-priority=err`
// (see units), so their stderr lines have priority err (3) and their stdout
// lines info (6). An app that writes syslog-style "<N>" prefixes picks its
// own priority, and then N <= 3 counts as stderr. Lines systemd itself logs
// about the unit (started, exited, killed) are StreamSystemd.
const (
	StreamStdout  = "stdout"
	StreamStderr  = "stderr"
	StreamSystemd = "systemd"
)

// stderrMaxPriority is the highest (least severe) priority counted as stderr.
const stderrMaxPriority = 3

// Entry is one log line of an instance.
type Entry struct {
	Time     time.Time `json:"time"`
	Instance string    `json:"instance"`
	Unit     string    `json:"unit"`
	Stream   string    `json:"stream"`
	Priority int       `json:"priority"`
	PID      int       `json:"pid,omitempty"`
	Message  string    `json:"message"`
	Cursor   string    `json:"cursor,omitempty"`
}

// JournalQuery selects log entries of ten's instances.
type JournalQuery struct {
	// Instance selects one instance; the zero value selects many.
	Instance units.Instance
	// Tenant, when Instance is zero, selects the instances with this id;
	// empty selects every instance.
	Tenant string
	// Search is literal text the message must contain: case-insensitive
	// when it has no upper-case letter (journalctl's rule).
	Search string
	// Since drops older entries when not zero.
	Since time.Time
	// Limit is how many of the newest entries to return (or to replay before
	// following); 0 means none before following, and is turned into
	// DefaultLimit when not following.
	Limit int
	// Follow keeps reading new entries until the context ends.
	Follow bool
	// Stream is "", StreamStdout or StreamStderr.
	Stream string
}

// DefaultLimit is the number of entries a query without a limit returns.
const DefaultLimit = 100

// Validate checks a query's fields.
func (q JournalQuery) Validate() error {
	switch q.Stream {
	case "", StreamStdout, StreamStderr:
	default:
		return fmt.Errorf("level %q: want stdout or stderr", q.Stream)
	}
	if q.Limit < 0 {
		return fmt.Errorf("limit %d: must not be negative", q.Limit)
	}
	if q.Tenant != "" && q.Instance != (units.Instance{}) && q.Tenant != q.Instance.ID {
		return fmt.Errorf("instance %s is not of tenant %s", q.Instance, q.Tenant)
	}
	return nil
}

// wants reports whether an entry's instance is in the query's scope.
func (q JournalQuery) wants(inst units.Instance) bool {
	if q.Instance != (units.Instance{}) {
		return inst == q.Instance
	}
	return q.Tenant == "" || inst.ID == q.Tenant
}

// unitArg is the -u argument: one unit, or a glob journalctl matches
// against the unit names it has entries for.
func (q JournalQuery) unitArg() string {
	if q.Instance != (units.Instance{}) {
		return q.Instance.ServiceUnit()
	}
	id := "*"
	if q.Tenant != "" {
		id = q.Tenant
	}
	return units.Prefix + "*@" + id + ".service"
}

// journalArgs builds the journalctl command line. withUnits=false reads
// without a unit filter (new units appear while following); entries are
// then filtered by wants. grep=false leaves the search to the caller.
func journalArgs(q JournalQuery, limit int, follow, withUnits, grep bool) []string {
	args := []string{"--no-pager", "--output=json", "--all"}
	if withUnits {
		args = append(args, "--unit="+q.unitArg())
	}
	if follow {
		args = append(args, "--follow")
	}
	if limit >= 0 {
		args = append(args, "--lines="+strconv.Itoa(limit))
	} else {
		args = append(args, "--lines=all")
	}
	if !q.Since.IsZero() {
		args = append(args, fmt.Sprintf("--since=@%d.%06d", q.Since.Unix(), q.Since.Nanosecond()/1000))
	}
	switch q.Stream {
	case StreamStderr:
		args = append(args, "--priority=0.."+strconv.Itoa(stderrMaxPriority))
	case StreamStdout:
		args = append(args, "--priority="+strconv.Itoa(stderrMaxPriority+1)+"..7")
	}
	if grep && q.Search != "" {
		args = append(args, "--grep="+regexp.QuoteMeta(q.Search))
	}
	return args
}

// ParseEntry decodes one line of `journalctl -o json`. ok is false for
// entries that belong to no instance of ten.
func ParseEntry(line []byte) (e Entry, ok bool, err error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Entry{}, false, fmt.Errorf("journal entry: %w", err)
	}
	field := func(name string) string { return fieldString(raw[name]) }
	unit := field("_SYSTEMD_UNIT")
	inst, kind, own := units.FromUnit(unit)
	if own && kind == units.KindService {
		e.Unit = unit
	} else {
		// systemd's own messages about the unit (Started, exited, killed).
		for _, f := range []string{"UNIT", "OBJECT_SYSTEMD_UNIT"} {
			u := field(f)
			if i, k, ok := units.FromUnit(u); ok && k == units.KindService {
				inst, e.Unit = i, u
				break
			}
		}
		if e.Unit == "" {
			return Entry{}, false, nil
		}
		e.Stream = StreamSystemd
	}
	e.Instance = inst.String()
	e.Message = field("MESSAGE")
	e.Cursor = field("__CURSOR")
	e.Priority = 6
	if p, err := strconv.Atoi(field("PRIORITY")); err == nil {
		e.Priority = p
	}
	if us, err := strconv.ParseInt(field("__REALTIME_TIMESTAMP"), 10, 64); err == nil {
		e.Time = time.UnixMicro(us).UTC()
	}
	e.PID, _ = strconv.Atoi(field("_PID"))
	if e.Stream == "" {
		e.Stream = StreamStdout
		if e.Priority <= stderrMaxPriority {
			e.Stream = StreamStderr
		}
	}
	return e, true, nil
}

// fieldString decodes a journal JSON field: a string, an array of bytes
// (binary or non-UTF-8 data), or an array of values when a field repeats
// (the first is taken).
func fieldString(m json.RawMessage) string {
	if len(m) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(m, &s) == nil {
		return s
	}
	var b []byte
	var nums []int
	if json.Unmarshal(m, &nums) == nil {
		for _, n := range nums {
			b = append(b, byte(n))
		}
		return strings.TrimRight(string(b), "\n")
	}
	var many []json.RawMessage
	if json.Unmarshal(m, &many) == nil && len(many) > 0 {
		return fieldString(many[0])
	}
	return ""
}

// matcher implements Search in Go where journalctl cannot (--grep needs a
// journalctl built with PCRE2).
func matcher(search string) func(string) bool {
	if search == "" {
		return func(string) bool { return true }
	}
	if strings.IndexFunc(search, unicode.IsUpper) >= 0 {
		return func(m string) bool { return strings.Contains(m, search) }
	}
	return func(m string) bool { return strings.Contains(strings.ToLower(m), search) }
}

var (
	grepOnce sync.Once
	grepOK   atomic.Bool
)

// journalctlGreps reports whether journalctl supports --grep: built with
// PCRE2 (its --version says +PCRE2), and the library loads (systemd 252
// dlopens it; see grepUnsupported).
func journalctlGreps() bool {
	grepOnce.Do(func() {
		out, err := exec.Command("journalctl", "--version").Output()
		grepOK.Store(err == nil && bytes.Contains(out, []byte("+PCRE2")))
	})
	return grepOK.Load()
}

// grepUnsupported recognises journalctl's complaints about --grep when
// libpcre2 is missing or it was built without it.
func grepUnsupported(err error) bool {
	m := strings.ToLower(err.Error())
	return strings.Contains(m, "pcre") || strings.Contains(m, "pattern matching")
}

// ReadJournal calls fn with the entries the query selects, oldest first;
// with Follow it keeps calling fn with new entries until ctx ends (and
// then returns nil) or fn fails.
func ReadJournal(ctx context.Context, q JournalQuery, fn func(Entry) error) error {
	if err := q.Validate(); err != nil {
		return err
	}
	called := false
	err := readJournal(ctx, q, journalctlGreps(), func(e Entry) error {
		called = true
		return fn(e)
	})
	if err != nil && q.Search != "" && grepOK.Load() && !called && grepUnsupported(err) {
		grepOK.Store(false) // search in Go from now on
		return readJournal(ctx, q, false, fn)
	}
	return err
}

func readJournal(ctx context.Context, q JournalQuery, grep bool, fn func(Entry) error) error {
	match := matcher(q.Search)
	if grep {
		match = func(string) bool { return true }
	}
	limit := q.Limit
	if !q.Follow && limit == 0 {
		limit = DefaultLimit
	}
	filter := func(e Entry) bool {
		inst, _ := units.ParseInstance(e.Instance)
		if !q.wants(inst) || !match(e.Message) {
			return false
		}
		// --priority cannot tell systemd's own lines from the app's.
		return q.Stream == "" || e.Stream == q.Stream
	}
	lim := limit
	if !grep && q.Search != "" {
		lim = -1 // search in Go over everything, then keep the newest
	}
	if !q.Follow {
		return lastN(ctx, journalArgs(q, lim, false, true, grep), filter, limit, fn)
	}
	// Follow: replay the newest entries, then follow from just before the
	// replay began. Entries the replay showed, and older ones, are skipped,
	// so nothing is lost or repeated between the two. One instance is
	// followed by unit name; many are followed by reading the whole journal
	// and filtering here, because a unit glob names only units that had
	// entries when journalctl started, not instances spawned later.
	from := time.Now()
	seen := map[string]bool{}
	if limit > 0 {
		err := lastN(ctx, journalArgs(q, lim, false, true, grep), filter, limit, func(e Entry) error {
			seen[e.Cursor] = true
			return fn(e)
		})
		if err != nil {
			return err
		}
	}
	fq := q
	if fq.Since.Before(from) {
		fq.Since = from.Add(-time.Second)
	}
	single := q.Instance != (units.Instance{})
	return runJournal(ctx, journalArgs(fq, -1, true, single, grep), filter, func(e Entry) error {
		if seen[e.Cursor] || e.Time.Before(from) {
			return nil
		}
		return fn(e)
	})
}

// lastN runs a bounded query and passes on the newest n entries that pass
// filter (journalctl's own --lines counts before ten's filter).
func lastN(ctx context.Context, args []string, filter func(Entry) bool, n int, fn func(Entry) error) error {
	var ring []Entry
	err := runJournal(ctx, args, filter, func(e Entry) error {
		ring = append(ring, e)
		if len(ring) > n {
			ring = ring[1:]
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range ring {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// runJournal runs journalctl and passes on the entries that pass filter.
func runJournal(ctx context.Context, args []string, filter func(Entry) bool, fn func(Entry) error) error {
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("journalctl: %w", err)
	}
	rd := bufio.NewReaderSize(out, 64<<10)
	var fnErr error
	for {
		line, err := rd.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 && fnErr == nil {
			e, ok, perr := ParseEntry(line)
			if perr == nil && ok && filter(e) {
				if fnErr = fn(e); fnErr != nil {
					cmd.Cancel()
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				cmd.Cancel()
			}
			break
		}
	}
	werr := cmd.Wait()
	if fnErr != nil {
		return fnErr
	}
	if ctx.Err() != nil {
		return nil
	}
	if werr != nil {
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		// Exit status 1 with nothing said (--grep found nothing) or "No data
		// available" (the unit glob matched no unit yet) means no entries.
		if errors.As(werr, &ee) && ee.ExitCode() == 1 && (msg == "" || strings.Contains(msg, "No data available")) {
			return nil
		}
		if msg != "" {
			return fmt.Errorf("journalctl %s: %s", strings.Join(args, " "), msg)
		}
		return fmt.Errorf("journalctl %s: %w", strings.Join(args, " "), werr)
	}
	return nil
}
