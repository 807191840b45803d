package main

import "testing"

func TestServeProcs(t *testing.T) {
	for _, c := range []struct{ in, want int }{{1, 1}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {64, 32}, {0, 1}} {
		if got := serveProcs(c.in); got != c.want {
			t.Errorf("serveProcs(%d) = %d, want %d", c.in, got, c.want)
		}
	}
}
