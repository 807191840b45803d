package main

import (
	"fmt"
	"runtime/debug"
)

// VersionCmd is `ten version`.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run() error {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v = s.Value[:12]
			}
		}
	}
	fmt.Println("ten", v)
	return nil
}
