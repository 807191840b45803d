//go:build !linux

package kernel

import "errors"

// handOff needs pidfds and /proc: Linux only. Elsewhere a relay keeps relaying.
func handOff(procs string) (int, error) {
	return 0, errors.New("the L4 relay hand-off needs Linux")
}
