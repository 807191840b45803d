package main

import (
	"context"
	"os"
)

// shellCmd is "tenbox shell".
type shellCmd struct {
	boxFlags
}

// Run boots the box and runs $SHELL (/bin/sh when unset) inside it.
func (s *shellCmd) Run(ctx context.Context) error {
	sh := os.Getenv("SHELL")
	if sh == "" {
		sh = "/bin/sh"
	}
	return runInBox(ctx, s.boxFlags, []string{sh})
}
