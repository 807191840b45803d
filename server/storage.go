package server

import (
	"context"
	"fmt"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/isolation"
	"github.com/tenhq/ten/units"
)

// Storage measures the instance's state directory (StateDirectory=
// tenement/NAME/ID). A directory that does not exist yet (the instance
// never ran) counts as empty.
func (s *Server) Storage(ctx context.Context, inst units.Instance) (apitype.Storage, error) {
	in, ok := s.reg.Get(inst)
	if !ok {
		return apitype.Storage{}, fmt.Errorf("storage %s: %w", inst, ErrNotFound)
	}
	out := apitype.Storage{Instance: inst.String(), Path: isolation.StateDir(inst)}
	if in.Svc != nil {
		out.Path = units.DataMountPoint(s.cfg, in.Svc, inst)
		if in.Svc.StorageQuotaMB > 0 {
			out.QuotaBytes = int64(in.Svc.StorageQuotaMB) << 20
		}
	}
	size, disk, files, err := isolation.DirUsage(ctx, out.Path)
	if err != nil {
		return apitype.Storage{}, fmt.Errorf("storage %s: %w", inst, err)
	}
	out.Bytes, out.DiskBytes, out.Files = size, disk, files
	if out.QuotaBytes > 0 {
		out.UsageRatio = float64(out.Bytes) / float64(out.QuotaBytes)
	}
	return out, nil
}
