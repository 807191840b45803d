// Package datadir prepares an instance's data directory
// {data_dir}/{name}/{id} when settings.data_dir puts it outside systemd's
// state directories: at spawn it creates the directory and opens the way
// to it for the instance's unprivileged user (systemd gives the directory
// itself to that user: see units.DataBind).
package datadir

import "errors"

// Options say what to prepare.
type Options struct {
	// Dir is the instance's data directory; it is created (mode 0700) when
	// missing.
	Dir string
	// Traverse, when set, is an ancestor of Dir (data_dir): it and every
	// directory between it and Dir get search permission for others
	// (o+x, not read), so the instance's unprivileged user can reach Dir.
	Traverse string
}

// ErrNotSupported is returned off Linux.
var ErrNotSupported = errors.New("datadir: not supported on this system")
