package dispatch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// SetFrozen marks every destination of label as frozen (the instance's
// cgroup is frozen) or not. A connection for a frozen destination is still
// assigned to its socket, where it waits in the backlog, and the program
// sends a wake event (see Wakes) for ten to thaw the instance. Marking a
// label that has no destination does nothing.
func (d *Dispatcher) SetFrozen(label string, frozen bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	labels, err := d.labels()
	if err != nil {
		return fmt.Errorf("mark %q frozen: %w", label, err)
	}
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	for id, k := range labels {
		if k.label() != label {
			continue
		}
		if !frozen {
			if err := d.objs.Frozen.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("mark %q thawed: %w", label, err)
			}
			continue
		}
		v := dispatchFrozenValue{SinceNs: uint64(ts.Nano())}
		// An entry that exists keeps its counters.
		if err := d.objs.Frozen.Update(id, v, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("mark %q frozen: %w", label, err)
		}
	}
	return nil
}

// FrozenState is what the dispatcher holds about a frozen label.
type FrozenState struct {
	// Connections counts the connections that arrived while it was frozen.
	Connections uint64
}

// Frozen returns the labels marked frozen, with what arrived for them: a
// ten that starts finds there the connections that came while it was down.
func (d *Dispatcher) Frozen() (map[string]FrozenState, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	labels, err := d.labels()
	if err != nil {
		return nil, fmt.Errorf("list frozen: %w", err)
	}
	out := map[string]FrozenState{}
	var (
		id uint32
		v  dispatchFrozenValue
	)
	it := d.objs.Frozen.Iterate()
	for it.Next(&id, &v) {
		k, ok := labels[id]
		if !ok {
			continue
		}
		fs := out[k.label()]
		fs.Connections += v.Connections
		out[k.label()] = fs
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list frozen: %w", err)
	}
	return out, nil
}

// Wakes reads the wake events of frozen destinations and calls fn with the
// label of each, until ctx ends. Events sent while no one read them (ten was
// down) are delivered first. fn runs on Wakes' goroutine: it should hand
// the work off rather than block for long.
func (d *Dispatcher) Wakes(ctx context.Context, fn func(label string)) error {
	rd, err := ringbuf.NewReader(d.objs.WakeEvents)
	if err != nil {
		return fmt.Errorf("wake events: %w", err)
	}
	go func() {
		<-ctx.Done()
		rd.Close()
	}()
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("wake events: %w", err)
		}
		if len(rec.RawSample) < 4 {
			continue
		}
		id := binary.NativeEndian.Uint32(rec.RawSample)
		d.mu.Lock()
		labels, err := d.labels()
		d.mu.Unlock()
		if err != nil {
			d.log.Warn("wake event: read destinations", "err", err)
			continue
		}
		if k, ok := labels[id]; ok {
			fn(k.label())
		}
	}
}
