package deb

import (
	"bytes"
	"debug/elf"
	"strings"
)

// Overrides keeps the lines of a lintian overrides file that apply to the
// binaries as they were built. pie says, for a binary's path in the package
// (usr/bin/ten, without the leading slash), whether it is position-independent
// (ELF type DYN). An override of statically-linked-binary applies only to a
// binary that is not, one of shared-library-lacks-prerequisites only to one
// that is: lintian warns of an override that matches nothing
// (mismatched-override), so the one that does not apply is left out, with
// the comment lines just above it. Other lines are kept as they are.
func Overrides(text []byte, pie map[string]bool) []byte {
	var out, comments bytes.Buffer
	for _, line := range strings.SplitAfter(string(text), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "#") || t == "" {
			comments.WriteString(line)
			continue
		}
		if !overrideApplies(t, pie) {
			comments.Reset()
			continue
		}
		out.Write(comments.Bytes())
		comments.Reset()
		out.WriteString(line)
	}
	out.Write(comments.Bytes())
	return out.Bytes()
}

// overrideApplies reads "PACKAGE: TAG [PATH]" and reports whether it can
// match a binary of the given kind; any other line applies.
func overrideApplies(line string, pie map[string]bool) bool {
	_, rest, ok := strings.Cut(line, ":")
	if !ok {
		return true
	}
	tag, ptr, _ := strings.Cut(strings.TrimSpace(rest), " ")
	path := strings.Trim(strings.TrimSpace(ptr), "[]")
	isPIE, known := pie[path]
	if !known {
		return true
	}
	switch tag {
	case "statically-linked-binary":
		return !isPIE
	case "shared-library-lacks-prerequisites":
		return isPIE
	}
	return true
}

// IsPIE reports whether the ELF binary data is position-independent
// (type DYN), as a PIE or a shared object is.
func IsPIE(data []byte) (bool, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return false, err
	}
	defer f.Close()
	return f.Type == elf.ET_DYN, nil
}
