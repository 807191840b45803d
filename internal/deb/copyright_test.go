package deb

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite debian/copyright (make copyright)")

// Own is ten's own stanza of debian/copyright.
const ownCopyright = `Files: *
Copyright: the ten authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is
 in /usr/share/common-licenses/Apache-2.0.
`

// debian/copyright lists every module linked into ten with its licence;
// `make copyright` rewrites it when go.mod changes.
func TestCopyright(t *testing.T) {
	mods, err := ListModules("../..", "./cmd/ten")
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, m := range mods {
		paths[m.Path] = true
	}
	for _, p := range []string{"github.com/alecthomas/kong", "github.com/cilium/ebpf", "github.com/coreos/go-systemd/v22", "go"} {
		if !paths[p] {
			t.Errorf("%s is linked into ten but not in the module list", p)
		}
	}
	text := Copyright(mods, ownCopyright)
	const file = "../../debian/copyright"
	if *update {
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v: run make copyright", err)
	}
	if string(b) != text {
		t.Errorf("debian/copyright is stale (the modules linked into ten changed): run make copyright")
	}
}

func TestClassify(t *testing.T) {
	for text, want := range map[string]string{
		"Permission is hereby granted, free of charge, to any person":                      "Expat",
		"Apache License\n Version 2.0, January 2004":                                       "Apache-2.0",
		"Redistribution and use in source and binary forms ... Neither the name of Google": "BSD-3-clause",
		"Redistribution and use in source and binary forms, with or without":               "BSD-2-clause",
		"GNU GENERAL PUBLIC LICENSE":                                                       "",
	} {
		if got := Classify(text); got != want {
			t.Errorf("Classify(%q) = %q, want %q", text, got, want)
		}
	}
	if got := copyrightLines("Copyright (c) 2015 Alec Thomas\nCopyright [yyyy] [name of copyright owner]\n"); strings.Join(got, "|") != "2015 Alec Thomas" {
		t.Errorf("copyrightLines = %q", got)
	}
}
