package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time by the Makefile and the Debian package
// (-ldflags "-X main.version=... -X main.commit=... -X main.buildDate=...").
var (
	version   = ""
	commit    = ""
	buildDate = ""
)

// VersionCmd is `ten version`.
type VersionCmd struct{}

// versionInfo is what `ten version` prints.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"build_date"`
	Go        string `json:"go"`
}

// currentVersion fills what the linker did not set from the Go build
// information (a plain `go build` in a checkout), else "unknown".
func currentVersion() versionInfo {
	v := versionInfo{Version: version, Commit: commit, BuildDate: buildDate, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && v.Commit == "":
				v.Commit = s.Value
			case s.Key == "vcs.time" && v.BuildDate == "":
				v.BuildDate = s.Value
			}
		}
	}
	if v.Version == "" {
		v.Version = "devel"
	}
	for _, p := range []*string{&v.Commit, &v.BuildDate} {
		if *p == "" {
			*p = "unknown"
		}
	}
	return v
}

// Run prints the version, the commit and the build date.
func (VersionCmd) Run(g *Globals) error {
	v := currentVersion()
	if g.JSON {
		return json.NewEncoder(stdout).Encode(v)
	}
	fmt.Fprintf(stdout, "ten %s\ncommit %s\nbuilt %s with %s\n", v.Version, v.Commit, v.BuildDate, v.Go)
	return nil
}
