//go:build linux && cgo

package main

// Built with cgo, ten-shim carries cat_linux.c: the fast path of
// `ten-shim cat`, a C constructor that gives a directly run app its journal
// streams and execs it before Go's runtime starts (what shim.Cat does, for
// a fraction of its cost per wake). Without cgo, shim.Cat does it all.

import "C"
