package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/tenhq/ten/units"
)

func (s *Server) registerStorage(api *http.ServeMux) {
	api.HandleFunc("GET /api/instances/{id}/storage", func(w http.ResponseWriter, r *http.Request) {
		inst, err := units.ParseInstance(r.PathValue("id"))
		if err != nil {
			writeErr(w, fmt.Errorf("%w: %v", ErrBadInput, err))
			return
		}
		if !mayTouch(w, r, inst) {
			return
		}
		st, err := s.Storage(r.Context(), inst)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
}

// Storage measures the instance's state directory (StateDirectory=
// tenement/NAME/ID). A directory that does not exist yet (the instance
// never ran) counts as empty.
func (s *Server) Storage(ctx context.Context, inst units.Instance) (Storage, error) {
	in, ok := s.reg.Get(inst)
	if !ok {
		return Storage{}, fmt.Errorf("storage %s: %w", inst, ErrNotFound)
	}
	out := Storage{Instance: inst.String(), Path: StateDir(inst)}
	if in.Svc != nil {
		out.Path = units.DataMountPoint(s.cfg, in.Svc, inst)
		if in.Svc.StorageQuotaMB > 0 {
			out.QuotaBytes = int64(in.Svc.StorageQuotaMB) << 20
		}
	}
	size, disk, files, err := dirUsage(ctx, out.Path)
	if err != nil {
		return Storage{}, fmt.Errorf("storage %s: %w", inst, err)
	}
	out.Bytes, out.DiskBytes, out.Files = size, disk, files
	if out.QuotaBytes > 0 {
		out.UsageRatio = float64(out.Bytes) / float64(out.QuotaBytes)
	}
	return out, nil
}

// StateDir guesses where the state directory of an instance the config no
// longer declares really is: under /var/lib/private when systemd made it for
// a DynamicUser service, else /var/lib/tenement/NAME/ID.
func StateDir(inst units.Instance) string {
	rel := filepath.Join("tenement", inst.Service, inst.ID)
	private := filepath.Join("/var/lib/private", rel)
	if st, err := os.Lstat(private); err == nil && st.IsDir() {
		return private
	}
	return filepath.Join(units.StateRoot, inst.Service, inst.ID)
}

// dirUsage sums a tree without following symlinks.
func dirUsage(ctx context.Context, root string) (size, disk, files int64, err error) {
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone meanwhile, or never made
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			files++
			size += info.Size()
		}
		disk += diskBytes(info)
		return nil
	})
	return size, disk, files, err
}
