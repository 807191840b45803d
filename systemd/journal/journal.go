package journal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tenhq/ten/units"
)

// Streams of a log entry. journald does not record which file descriptor a
// line came from; ten starts apps under `ten-shim cat` (or systemd-cat
// --stderr-priority=err; see units), so their stderr lines have priority err (3) and their stdout
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

// Entry is one log line of an instance. Process and InstanceID are
// tenement's names for the two halves of Instance.
type Entry struct {
	Time       time.Time `json:"time"`
	Instance   string    `json:"instance"`
	Process    string    `json:"process"`
	InstanceID string    `json:"instance_id"`
	Unit       string    `json:"unit"`
	Stream     string    `json:"stream"`
	Priority   int       `json:"priority"`
	PID        int       `json:"pid,omitempty"`
	Message    string    `json:"message"`
	Cursor     string    `json:"cursor,omitempty"`
}

// MarshalJSON writes e with tenement's names for two of its fields as well:
// timestamp (Time in Unix milliseconds) and level (Stream: stdout, stderr,
// or systemd for systemd's own lines about the unit), so that scripts
// written against tenement's GET /api/logs keep working.
func (e Entry) MarshalJSON() ([]byte, error) {
	type plain Entry // without this method
	var ms int64
	if !e.Time.IsZero() {
		ms = e.Time.UnixMilli()
	}
	return json.Marshal(struct {
		plain
		Timestamp int64  `json:"timestamp"`
		Level     string `json:"level"`
	}{plain(e), ms, e.Stream})
}

// Query selects log entries of ten's instances.
type Query struct {
	// Instance selects one instance; the zero value selects many.
	Instance units.Instance
	// Tenant, when Instance is zero, selects the instances with this id;
	// empty selects every instance.
	Tenant string
	// Service, when Instance is zero, selects the instances of this service
	// (tenement's ?process=api); empty selects every service.
	Service string
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
	// FollowFrom, when not zero, is the instant a follow starts from
	// (default: when Read is called). A caller that tells its client the
	// stream is open takes it before saying so: a line the client causes
	// once told is then never missed, however late journalctl starts.
	FollowFrom time.Time
	// Stream is "", StreamStdout or StreamStderr.
	Stream string
}

// DefaultLimit is the number of entries a query without a limit returns.
const DefaultLimit = 100

// Bounds on what reading the journal holds in memory. journald cuts an
// app's stdout and stderr lines at its LineMax (48 KiB by default), but a
// process can send a message of many MiB over journald's native protocol,
// and journalctl --all prints it whole; a read of 10,000 such lines made
// ten hold gigabytes.
const (
	// MaxEntryBytes bounds one entry as journalctl prints it (a line of
	// JSON); a longer entry is skipped.
	MaxEntryBytes = 1 << 20
	// MaxMessageBytes bounds an entry's message; a longer one is cut there
	// and ends with "…".
	MaxMessageBytes = 64 << 10
	// MaxReadBytes bounds the entries one read (or a follow's replay)
	// keeps: past it the oldest are dropped, so a query gets the newest
	// entries that fit, however large its limit.
	MaxReadBytes = 4 << 20
)

// entryOverhead is what an entry costs besides its message, counted
// against MaxReadBytes.
const entryOverhead = 256

// Size is what e counts against MaxReadBytes.
func (e Entry) Size() int {
	return len(e.Message) + len(e.Cursor) + len(e.Unit) + len(e.Instance) + entryOverhead
}

// Validate checks a query's fields.
func (q Query) Validate() error {
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
	if q.Service != "" && q.Instance != (units.Instance{}) && q.Service != q.Instance.Service {
		return fmt.Errorf("instance %s is not of service %s", q.Instance, q.Service)
	}
	if err := CheckSearch(q.Search); err != nil {
		return err
	}
	if !q.Since.IsZero() && q.Since.Before(time.Unix(0, 0)) {
		return fmt.Errorf("since %s is before 1970", q.Since.UTC().Format(time.RFC3339))
	}
	return nil
}

// MaxSearchLen bounds Query.Search, in bytes.
const MaxSearchLen = 512

// CheckSearch refuses a search text journalctl cannot be given: one with a
// NUL byte (no command-line argument can hold it) or other control
// characters, or longer than MaxSearchLen.
func CheckSearch(s string) error {
	if len(s) > MaxSearchLen {
		return fmt.Errorf("search is %d bytes long; at most %d", len(s), MaxSearchLen)
	}
	for i, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("search has the control character %U at byte %d; search for printable text", r, i)
		}
	}
	return nil
}

// wants reports whether an entry's instance is in the query's scope.
func (q Query) wants(inst units.Instance) bool {
	if q.Instance != (units.Instance{}) {
		return inst == q.Instance
	}
	return (q.Tenant == "" || inst.ID == q.Tenant) && (q.Service == "" || inst.Service == q.Service)
}

// unitArg is the -u argument: one unit, or a glob journalctl matches
// against the unit names it has entries for.
func (q Query) unitArg() string {
	if q.Instance != (units.Instance{}) {
		return q.Instance.ServiceUnit()
	}
	svc, id := "*", "*"
	if q.Tenant != "" {
		id = q.Tenant
	}
	if q.Service != "" {
		svc = q.Service
	}
	return units.Prefix + svc + "@" + id + ".service"
}

// journalArgs builds the journalctl command line. withUnits=false reads
// without a unit filter (new units appear while following); entries are
// then filtered by wants. grep=false leaves the search to the caller.
func journalArgs(q Query, limit int, follow, withUnits, grep bool) []string {
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
//
// Only what journald itself vouches for decides whose line it is. Fields
// starting with "_" are set by journald from the sender's kernel
// credentials and cgroup; every other field (UNIT=, OBJECT_SYSTEMD_UNIT=)
// is whatever the sender wrote, so any local process could claim to be
// systemd talking about another tenant's unit. So:
//   - _SYSTEMD_UNIT naming an instance's service makes it that instance's
//     line (its stdout or stderr);
//   - otherwise UNIT= or OBJECT_SYSTEMD_UNIT= count only when _PID is 1
//     (systemd's own lines: started, exited, killed) or ten's own process;
//   - anything else is dropped, including a line whose sender exited before
//     journald could read its cgroup (no _SYSTEMD_UNIT): journald cannot
//     say whose it was, and it may be a forgery.
func ParseEntry(line []byte) (e Entry, ok bool, err error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return Entry{}, false, fmt.Errorf("journal entry: %w", err)
	}
	field := func(name string) string { return fieldString(raw[name]) }
	unit := field("_SYSTEMD_UNIT")
	pid, _ := strconv.Atoi(field("_PID"))
	inst, kind, own := units.FromUnit(unit)
	switch {
	case own && kind == units.KindService:
		e.Unit = unit
	case pid == 1 || (pid > 0 && pid == selfPID):
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
	default:
		return Entry{}, false, nil
	}
	e.Instance = inst.String()
	e.Process, e.InstanceID = inst.Service, inst.ID
	e.Message = clip(field("MESSAGE"), MaxMessageBytes)
	e.Cursor = field("__CURSOR")
	e.Priority = 6
	if p, err := strconv.Atoi(field("PRIORITY")); err == nil {
		e.Priority = p
	}
	if us, err := strconv.ParseInt(field("__REALTIME_TIMESTAMP"), 10, 64); err == nil {
		e.Time = time.UnixMicro(us).UTC()
	}
	e.PID = pid
	if e.Stream == "" {
		e.Stream = StreamStdout
		if e.Priority <= stderrMaxPriority {
			e.Stream = StreamStderr
		}
	}
	return e, true, nil
}

// clip cuts s to at most max bytes, on a UTF-8 boundary, ending in "…".
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const more = "…"
	cut := max - len(more)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + more
}

// selfPID is ten's own process id: lines ten itself sends about a unit are
// trusted like systemd's.
var selfPID = os.Getpid()

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
// journalctl built with PCRE2, and the library at run time).
func matcher(search string) func(string) bool {
	if search == "" {
		return func(string) bool { return true }
	}
	if strings.IndexFunc(search, unicode.IsUpper) >= 0 {
		return func(m string) bool { return strings.Contains(m, search) }
	}
	return func(m string) bool { return strings.Contains(strings.ToLower(m), search) }
}

// journalctlGreps reports whether journalctl supports --grep. It is found
// out once, from journalctl itself, and never changed by what a request
// caused: a request's failure (a bad --since, a killed journalctl) must not
// switch the feature off for everyone. See DetectGrep.
var journalctlGreps = sync.OnceValue(func() bool {
	ok, _ := probeGrep(context.Background())
	return ok
})

// DetectGrep finds out whether journalctl can search (--grep) and returns
// the answer with the reason; ten serve calls it once at start and logs it.
// systemd must be built with PCRE2 (its --version says +PCRE2) and the
// library must load (systemd 252 loads it only when --grep is used), so a
// trial --grep over an empty selection is the proof.
func DetectGrep() (bool, string) {
	ok := journalctlGreps()
	if ok {
		return true, "journalctl --grep works"
	}
	_, why := probeGrep(context.Background())
	return false, why
}

func probeGrep(ctx context.Context) (bool, string) {
	out, err := exec.CommandContext(ctx, "journalctl", "--version").Output()
	if err != nil {
		return false, fmt.Sprintf("journalctl --version: %v", err)
	}
	if !bytes.Contains(out, []byte("+PCRE2")) {
		return false, "journalctl was built without PCRE2"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "journalctl", "--no-pager", "--quiet", "--output=json", "--lines=0",
		"--unit="+units.Prefix+"grep-probe@none.service", "--grep=ten-grep-probe")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	msg := strings.ToLower(stderr.String())
	if strings.Contains(msg, "pcre") || strings.Contains(msg, "pattern matching") {
		return false, "journalctl --grep: " + strings.TrimSpace(stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		return false, fmt.Sprintf("journalctl --grep: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return true, ""
}

// Read calls fn with the entries the query selects, oldest first;
// with Follow it keeps calling fn with new entries until ctx ends (and
// then returns nil) or fn fails.
func Read(ctx context.Context, q Query, fn func(Entry) error) error {
	if err := q.Validate(); err != nil {
		return err
	}
	return readJournal(ctx, q, journalctlGreps(), fn)
}

func readJournal(ctx context.Context, q Query, grep bool, fn func(Entry) error) error {
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
	switch {
	case q.Search != "":
		// Search over everything, then keep the newest: in Go where
		// journalctl cannot --grep, and where it can, because journalctl
		// of systemd 252 prints --grep with --lines newest first.
		lim = -1
	case !q.Since.IsZero():
		// journalctl's --lines=N with --since gives the oldest N of the
		// window; read the window and keep the newest.
		lim = -1
	}
	args := func(lim int) []string { return journalArgs(q, lim, false, true, grep) }
	if !q.Follow {
		return lastN(ctx, args, lim, filter, limit, fn)
	}
	// Follow: replay the newest entries, then follow from just before the
	// replay began. Entries the replay showed, and older ones, are skipped,
	// so nothing is lost or repeated between the two. One instance is
	// followed by unit name; many are followed by reading the whole journal
	// and filtering here, because a unit glob names only units that had
	// entries when journalctl started, not instances spawned later.
	from := time.Now()
	if !q.FollowFrom.IsZero() && q.FollowFrom.Before(from) {
		from = q.FollowFrom
	}
	seen := map[string]bool{}
	if limit > 0 {
		err := lastN(ctx, args, lim, filter, limit, func(e Entry) error {
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
	_, err := runJournal(ctx, journalArgs(fq, -1, true, single, grep), filter, func(e Entry) error {
		if seen[e.Cursor] || e.Time.Before(from) {
			return nil
		}
		return fn(e)
	})
	return err
}

// lastN runs a query bounded by lim lines (-1: none) and passes on the
// newest n entries that pass filter, at most MaxReadBytes of them.
// journalctl's --lines counts before ten's filter (systemd's own lines about
// a unit have the app's priorities, so --level cannot leave them to
// journalctl): when it printed all it was asked for and fewer than n
// passed, lastN asks again for four times as many lines, up to all of them.
func lastN(ctx context.Context, args func(lim int) []string, lim int, filter func(Entry) bool, n int, fn func(Entry) error) error {
	for {
		ring := newest{n: n, max: MaxReadBytes}
		lines, err := runJournal(ctx, args(lim), filter, func(e Entry) error {
			ring.add(e)
			return nil
		})
		if err != nil {
			return err
		}
		if lim >= 0 && len(ring.entries) < n && lines >= lim && ring.size <= MaxReadBytes/2 {
			if lim *= 4; lim > maxLinesAsked {
				lim = -1
			}
			continue
		}
		for _, e := range ring.entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	}
}

// maxLinesAsked is the most lines lastN asks journalctl for before it
// reads without a bound.
const maxLinesAsked = 1 << 18

// newest keeps the newest n entries added, dropping the oldest while they
// add up to more than max bytes (Entry.Size).
type newest struct {
	n, max  int
	size    int
	entries []Entry
}

func (r *newest) add(e Entry) {
	r.entries = append(r.entries, e)
	r.size += e.Size()
	for len(r.entries) > r.n || (r.size > r.max && len(r.entries) > 0) {
		r.size -= r.entries[0].Size()
		r.entries[0] = Entry{} // the backing array must not keep its message
		r.entries = r.entries[1:]
	}
}

// readLine reads a line of at most max bytes from rd; a longer line is
// read to its end and dropped (nil, with the error that ended it).
func readLine(rd *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	long := false
	for {
		frag, err := rd.ReadSlice('\n')
		if !long {
			if len(line)+len(frag) > max {
				long, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if long {
			return nil, err
		}
		return line, err
	}
}

// runJournal runs journalctl and passes on the entries that pass filter;
// it returns how many entries journalctl printed.
func runJournal(ctx context.Context, args []string, filter func(Entry) bool, fn func(Entry) error) (int, error) {
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("journalctl: %w", err)
	}
	rd := bufio.NewReaderSize(out, 64<<10)
	var fnErr error
	lines := 0
	for {
		line, err := readLine(rd, MaxEntryBytes)
		if line != nil || err == nil { // a line, or one too long (skipped)
			lines++
		}
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
		return lines, fnErr
	}
	if ctx.Err() != nil {
		return lines, nil
	}
	if werr != nil {
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		// Exit status 1 with nothing said (--grep found nothing) or "No data
		// available" (the unit glob matched no unit yet) means no entries.
		if errors.As(werr, &ee) && ee.ExitCode() == 1 && (msg == "" || strings.Contains(msg, "No data available")) {
			return lines, nil
		}
		if msg != "" {
			return lines, fmt.Errorf("journalctl %s: %s", strings.Join(args, " "), msg)
		}
		return lines, fmt.Errorf("journalctl %s: %w", strings.Join(args, " "), werr)
	}
	return lines, nil
}
