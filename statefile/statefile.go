// Package statefile keeps what ten serve decides at run time and systemd
// cannot hold for it, in {data_dir}/state.json: routing weights, the failed
// marks of health (health.Marks) and since when ten froze an instance
// (kernel.Records). The file is written atomically on every change.
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tenhq/ten/units"
)

// File keeps what ten decides at run time and systemd cannot hold for
// it: routing weights and the failed mark of instances that exhausted
// max_restarts. tenement keeps weights in memory only and loses them on a
// restart; ten reads this file back when it starts.
const File = "state.json"

// Persisted is the content of state.json.
type Persisted struct {
	// Weights by instance name ("api:prod"); an absent instance has 100.
	Weights map[string]int `json:"weights"`
	// Failed holds the reason an instance was marked failed.
	Failed map[string]string `json:"failed,omitempty"`
	// Frozen holds since when ten froze an instance (kernel.Freezing): a new ten
	// keeps it frozen or thaws it according to this and the config.
	Frozen map[string]time.Time `json:"frozen,omitempty"`
}

// Store is state.json, loaded; it is safe for concurrent use.
type Store struct {
	path string
	mu   sync.Mutex // mu guards p
	p    Persisted
}

// Load reads dataDir/state.json; a missing file is empty, a corrupt one an
// error that names it.
func Load(dataDir string) (*Store, error) {
	st := &Store{path: filepath.Join(dataDir, File)}
	data, err := os.ReadFile(st.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", st.path, err)
	default:
		if err := json.Unmarshal(data, &st.p); err != nil {
			return nil, fmt.Errorf("%s: %w (fix or remove it; it holds routing weights)", st.path, err)
		}
	}
	if st.p.Weights == nil {
		st.p.Weights = map[string]int{}
	}
	if st.p.Failed == nil {
		st.p.Failed = map[string]string{}
	}
	if st.p.Frozen == nil {
		st.p.Frozen = map[string]time.Time{}
	}
	return st, nil
}

// Weight returns the stored weight, 100 when none is stored.
func (st *Store) Weight(inst units.Instance) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	if w, ok := st.p.Weights[inst.String()]; ok {
		return w
	}
	return 100
}

// Update changes the state under the lock and writes it to disk.
func (st *Store) Update(f func(p *Persisted)) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	f(&st.p)
	return st.save()
}

// Forget drops everything stored about inst (it was removed).
// The file is written only when something was stored: tearing down
// thousands of instances must not write (and fsync) it once each.
func (st *Store) Forget(inst units.Instance) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	name := inst.String()
	_, w := st.p.Weights[name]
	_, f := st.p.Failed[name]
	_, z := st.p.Frozen[name]
	if !w && !f && !z {
		return nil
	}
	delete(st.p.Weights, name)
	delete(st.p.Failed, name)
	delete(st.p.Frozen, name)
	return st.save()
}

// save writes the file atomically: a crash leaves the old or the new file,
// never half of one.
func (st *Store) save() error {
	data, err := json.MarshalIndent(st.p, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(st.path), ".state-*.json")
	if err != nil {
		return fmt.Errorf("write %s: %w", st.path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", st.path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", st.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", st.path, err)
	}
	if err := os.Rename(tmp.Name(), st.path); err != nil {
		return fmt.Errorf("write %s: %w", st.path, err)
	}
	if d, err := os.Open(filepath.Dir(st.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// FrozenRecords returns since when ten froze each instance (a copy); the
// methods below keep the records for package kernel's Freezing.
func (st *Store) FrozenRecords() map[string]time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make(map[string]time.Time, len(st.p.Frozen))
	for k, v := range st.p.Frozen {
		out[k] = v
	}
	return out
}

// FrozenSince returns since when ten froze the instance, if it did.
func (st *Store) FrozenSince(name string) (time.Time, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	t, ok := st.p.Frozen[name]
	return t, ok
}

// RecordFrozen records that ten froze the instance at since.
func (st *Store) RecordFrozen(name string, since time.Time) error {
	return st.Update(func(p *Persisted) { p.Frozen[name] = since })
}

// ForgetFrozen drops the instance's record.
func (st *Store) ForgetFrozen(name string) error {
	return st.Update(func(p *Persisted) { delete(p.Frozen, name) })
}

// FailedMark returns the failed mark of an instance ("" when none); the
// methods below keep the marks for package health's Monitor.
func (st *Store) FailedMark(name string) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.p.Failed[name]
}

// SetFailedMark marks an instance failed, with the reason.
func (st *Store) SetFailedMark(name, reason string) error {
	return st.Update(func(p *Persisted) { p.Failed[name] = reason })
}

// ForgetFailedMark drops an instance's failed mark.
func (st *Store) ForgetFailedMark(name string) error {
	return st.Update(func(p *Persisted) { delete(p.Failed, name) })
}
