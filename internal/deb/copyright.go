package deb

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Module is one Go module linked into the binary, with its licence.
type Module struct {
	Path    string
	Version string
	// License is the Debian short name (Expat, Apache-2.0, BSD-3-clause,
	// BSD-2-clause, ISC, MPL-2.0).
	License string
	// Copyright lists the copyright lines of its licence and notice files.
	Copyright []string
	// Text is the licence text (kept inline but for licences Debian has in
	// /usr/share/common-licenses).
	Text string
}

// ListModules returns the modules whose packages `go list -deps` finds in
// pkg (./cmd/ten) for linux, built in dir, plus the Go standard library
// (Path "go"), each with its licence read from the module cache. The main
// module is left out.
func ListModules(dir, pkg string) ([]Module, error) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}\t{{.Version}}\t{{.Dir}}{{end}}{{end}}", pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %w", pkg, err)
	}
	seen := map[string]bool{}
	var mods []Module
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		m, err := readModule(f[0], f[1], f[2])
		if err != nil {
			return nil, err
		}
		mods = append(mods, m)
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %w", err)
	}
	// No version: the toolchain that builds may be newer than go.mod says.
	std, err := readModule("go", "", strings.TrimSpace(string(goroot)))
	if err != nil {
		return nil, err
	}
	mods = append(mods, std)
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	return mods, nil
}

var licenseNames = []string{"LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING", "LICENSE-MIT"}

func readModule(path, version, dir string) (Module, error) {
	m := Module{Path: path, Version: version}
	for _, n := range licenseNames {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err == nil {
			m.Text = string(b)
			break
		}
	}
	if m.Text == "" {
		return m, fmt.Errorf("module %s %s: no licence file in %s", path, version, dir)
	}
	m.License = Classify(m.Text)
	if m.License == "" {
		return m, fmt.Errorf("module %s %s: licence in %s not recognised; add it to deb.Classify", path, version, dir)
	}
	m.Copyright = copyrightLines(m.Text)
	if notice, err := os.ReadFile(filepath.Join(dir, "NOTICE")); err == nil {
		m.Copyright = append(m.Copyright, copyrightLines(string(notice))...)
	}
	if len(m.Copyright) == 0 {
		m.Copyright = []string{"the " + path + " authors"}
	}
	return m, nil
}

// Classify names a licence text by its Debian short name, or "" when it is
// none of those ten's dependencies use.
func Classify(text string) string {
	t := strings.Join(strings.Fields(text), " ")
	switch {
	case strings.Contains(t, "Apache License") && strings.Contains(t, "Version 2.0"):
		return "Apache-2.0"
	case strings.Contains(t, "CC0 1.0") && strings.Contains(t, "Creative Commons"):
		return "CC0-1.0"
	case strings.Contains(t, "Mozilla Public License Version 2.0"):
		return "MPL-2.0"
	case strings.Contains(t, "Permission is hereby granted, free of charge"):
		return "Expat"
	case strings.Contains(t, "Permission to use, copy, modify, and/or distribute"):
		return "ISC"
	case strings.Contains(t, "Redistribution and use in source and binary forms"):
		if strings.Contains(t, "Neither the name") || strings.Contains(t, "names of its contributors") {
			return "BSD-3-clause"
		}
		return "BSD-2-clause"
	}
	return ""
}

var copyrightRE = regexp.MustCompile(`(?i)^\s*copyright\s+(\(c\)\s*|©\s*)?(.*\d{4}.*)$`)

// copyrightLines returns the holders of the copyright lines of a licence
// ("Copyright (c) 2015 Alec Thomas" → "2015 Alec Thomas"), without the
// placeholders of licence templates.
func copyrightLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		mm := copyrightRE.FindStringSubmatch(l)
		if mm == nil || strings.Contains(mm[2], "[yyyy]") || strings.Contains(mm[2], "{yyyy}") {
			continue
		}
		out = append(out, strings.TrimSpace(mm[2]))
	}
	return out
}

// commonLicenses are the licences Debian ships in /usr/share/common-licenses,
// referred to rather than copied (lintian insists for Apache-2.0).
var commonLicenses = map[string]string{
	"Apache-2.0": "Apache-2.0",
	"MPL-2.0":    "MPL-2.0",
	"CC0-1.0":    "CC0-1.0",
}

// Copyright renders debian/copyright in Debian's machine-readable format:
// ten's own stanza, then one stanza per module with its copyright holders
// and licence, its files named where `go mod vendor` would put them.
func Copyright(mods []Module, own string) string {
	var b strings.Builder
	b.WriteString(`Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ten
Source: https://github.com/tenhq/ten
Comment: Generated by "make copyright" from the Go modules linked into
 /usr/bin/ten (go list -deps ./cmd/ten) and the licence files in the Go
 module cache. A module's files are named where "go mod vendor" puts them;
 the Go standard library and runtime as "go".

`)
	b.WriteString(own)
	used := map[string]bool{}
	for _, m := range mods {
		files := "vendor/" + m.Path + "/*"
		if m.Path == "go" {
			files = "go/*"
		}
		fmt.Fprintf(&b, "\nFiles: %s\nCopyright: %s\n", files, strings.Join(m.Copyright, "\n           "))
		if _, ok := commonLicenses[m.License]; ok {
			used[m.License] = true
			fmt.Fprintf(&b, "License: %s\nComment: %s\n", m.License, strings.TrimSpace(m.Path+" "+m.Version))
			continue
		}
		fmt.Fprintf(&b, "License: %s\n%s", m.License, indent(m.Text))
		fmt.Fprintf(&b, "Comment: %s\n", strings.TrimSpace(m.Path+" "+m.Version))
	}
	var names []string
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "\nLicense: %s\n On Debian systems, the complete text of the %s licence is in\n /usr/share/common-licenses/%s.\n", n, n, commonLicenses[n])
	}
	return b.String()
}

// indent formats text as the continuation lines of a field: a space before
// each line, " ." for an empty one.
func indent(text string) string {
	var b strings.Builder
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(text, "\r", ""), "\n "), "\n")
	for len(lines) > 0 && strings.TrimSpace(lines[0]) == "" {
		lines = lines[1:]
	}
	for _, l := range lines {
		l = strings.TrimRight(strings.ReplaceAll(l, "\t", "    "), " ")
		if l == "" {
			b.WriteString(" .\n")
			continue
		}
		b.WriteString(" " + l + "\n")
	}
	return b.String()
}
