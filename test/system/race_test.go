//go:build race

package system

// raceBuild is set when the tests run with -race: ten is then built with
// -race too, and a data race it reports fails the test (see checkRaces).
const raceBuild = true
