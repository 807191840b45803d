// Package datadir prepares an instance's data directory
// {data_dir}/{name}/{id} when settings.data_dir puts it outside systemd's
// state directories: it runs before each start of the instance (`ten
// datadir`, with full privileges), creates the directory, opens the way
// to it for the instance's user and gives it that user.
package datadir

import "errors"

// Options say what to prepare.
type Options struct {
	// Dir is the instance's data directory; it is created (mode 0700) when
	// missing.
	Dir string
	// OwnerOf, when set, is a directory owned by the instance's user (the
	// state directory systemd has just made for a DynamicUser unit, whose
	// uid is picked at start); Dir and everything in it is given the same
	// owner when Dir's owner differs.
	OwnerOf string
	// Traverse, when set, is an ancestor of Dir (data_dir): it and every
	// directory between it and Dir get search permission for others
	// (o+x, not read), so the instance's unprivileged user can reach Dir.
	Traverse string
}

// ErrNotSupported is returned where the directory's owner cannot be set.
var ErrNotSupported = errors.New("datadir: not supported on this system")
