//go:build !race

package system

// raceBuild is set when the tests run with -race (see race_test.go).
const raceBuild = false
