//go:build !linux

package main

// isTerminal reports false: boxes need Linux, so this is never asked.
func isTerminal(fd int) bool { return false }
