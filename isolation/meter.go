package isolation

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/config"
	"github.com/tenhq/ten/units"
)

// Bounds on measuring instances' storage (GET /api/instances/ID/storage):
// the measure walks a tree the tenant owns, which may hold millions of
// files. 300,000 files in one directory cost ten 1.2 s and 55 MiB per
// request, and 20 requests at once 16 s of CPU and 1.2 GiB.
const (
	// MeterTTL is how long a measure of an instance is reused: requests
	// for it meanwhile (and those that arrive while it runs) get the same
	// answer.
	MeterTTL = 10 * time.Second
	// MeterWalks is how many instances are measured at once; others wait
	// for a place (as long as their request lasts).
	MeterWalks = 2
	// MeterTimeout bounds one measure.
	MeterTimeout = time.Minute
	// dirBatch is how many entries of a directory are read at a time.
	dirBatch = 512
)

// Meter measures instances' storage (Measure) within the bounds above. The
// zero value is ready; it is safe for concurrent use.
type Meter struct {
	once  sync.Once
	walks chan struct{}
	mu    sync.Mutex // mu guards last
	last  map[units.Instance]*measure
}

type measure struct {
	done chan struct{} // closed when st and err are set
	at   time.Time
	st   apitype.Storage
	err  error
}

// Measure is Measure (the function) for inst, shared with the callers that
// ask for inst while it runs and for MeterTTL after.
func (m *Meter) Measure(ctx context.Context, cfg *config.Config, svc *config.Service, inst units.Instance) (apitype.Storage, error) {
	m.once.Do(func() {
		m.walks = make(chan struct{}, MeterWalks)
		m.last = map[units.Instance]*measure{}
	})
	now := time.Now()
	m.mu.Lock()
	for k, e := range m.last { // forget old answers, removed instances' too
		if isDone(e) && now.Sub(e.at) > MeterTTL {
			delete(m.last, k)
		}
	}
	e := m.last[inst]
	if e == nil {
		e = &measure{done: make(chan struct{})}
		m.last[inst] = e
		go m.run(e, cfg, svc, inst)
	}
	m.mu.Unlock()
	select {
	case <-e.done:
		return e.st, e.err
	case <-ctx.Done():
		return apitype.Storage{}, ctx.Err()
	}
}

func isDone(e *measure) bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// run measures for every caller of e: its context is none of theirs, so
// that one caller leaving does not fail the others.
func (m *Meter) run(e *measure, cfg *config.Config, svc *config.Service, inst units.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), MeterTimeout)
	defer cancel()
	select {
	case m.walks <- struct{}{}:
		e.st, e.err = Measure(ctx, cfg, svc, inst)
		<-m.walks
	case <-ctx.Done():
		e.err = ctx.Err()
	}
	e.at = time.Now()
	close(e.done)
}

// walkUsage adds up the tree at path (not following symlinks) into size,
// disk and files, reading each directory dirBatch entries at a time.
func walkUsage(ctx context.Context, path string, info fs.FileInfo, size, disk, files *int64) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	*disk += diskBytes(info)
	if !info.IsDir() {
		*files++
		*size += info.Size()
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // gone meanwhile
		}
		return err
	}
	defer f.Close()
	for {
		ents, err := f.ReadDir(dirBatch)
		for _, d := range ents {
			info, ierr := d.Info()
			if ierr != nil {
				if errors.Is(ierr, fs.ErrNotExist) {
					continue
				}
				return ierr
			}
			if werr := walkUsage(ctx, filepath.Join(path, d.Name()), info, size, disk, files); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
