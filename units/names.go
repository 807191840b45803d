// Package units turns a tenement.toml service and an instance id into the
// names and D-Bus properties of the two transient systemd units that make up
// an instance: tenement-NAME@ID.socket (held by systemd, always listening)
// and tenement-NAME@ID.service (the app, started by socket activation).
// It is pure: no D-Bus, no files, so every mapping is golden-tested.
package units

import (
	"fmt"
	"strings"

	"github.com/tenhq/ten/config"
)

// Prefix starts every unit name ten owns.
const Prefix = "tenement-"

// Unit kinds.
const (
	KindSocket  = "socket"
	KindService = "service"
)

// Instance names one instance, "api:prod" = service api, id prod.
type Instance struct {
	Service string
	ID      string
}

// ParseInstance parses "SERVICE:ID" and validates both parts.
func ParseInstance(s string) (Instance, error) {
	svc, id, ok := strings.Cut(s, ":")
	if !ok {
		return Instance{}, fmt.Errorf("instance %q: want SERVICE:ID, for example api:prod", s)
	}
	if err := config.CheckName("service name", svc); err != nil {
		return Instance{}, fmt.Errorf("instance %q: %w", s, err)
	}
	if err := config.CheckName("instance id", id); err != nil {
		return Instance{}, fmt.Errorf("instance %q: %w", s, err)
	}
	return Instance{Service: svc, ID: id}, nil
}

// String returns "service:id".
func (i Instance) String() string { return i.Service + ":" + i.ID }

// Base returns "tenement-service@id", the name systemctl and journalctl accept
// for the pair.
func (i Instance) Base() string { return Prefix + i.Service + "@" + i.ID }

// SocketUnit returns "tenement-service@id.socket".
func (i Instance) SocketUnit() string { return i.Base() + ".socket" }

// ServiceUnit returns "tenement-service@id.service".
func (i Instance) ServiceUnit() string { return i.Base() + ".service" }

// Patterns are the ListUnitsByPatterns globs that find every unit of ten.
var Patterns = []string{Prefix + "*@*.socket", Prefix + "*@*.service"}

// FromUnit parses a unit name ten created; ok is false for any other name.
func FromUnit(name string) (inst Instance, kind string, ok bool) {
	rest, found := strings.CutPrefix(name, Prefix)
	if !found {
		return Instance{}, "", false
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return Instance{}, "", false
	}
	kind = rest[dot+1:]
	if kind != KindSocket && kind != KindService {
		return Instance{}, "", false
	}
	svc, id, found := strings.Cut(rest[:dot], "@")
	if !found || config.CheckName("service", svc) != nil || config.CheckName("id", id) != nil {
		return Instance{}, "", false
	}
	return Instance{Service: svc, ID: id}, kind, true
}
