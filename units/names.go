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

// RootSlice is the slice every instance's units live in, below the
// service slices (tenement-SERVICE.slice is in it by systemd's naming).
const RootSlice = "tenement.slice"

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
	if err := config.CheckID("instance id", id); err != nil {
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
	if !found || config.CheckName("service", svc) != nil || config.CheckID("id", id) != nil {
		return Instance{}, "", false
	}
	return Instance{Service: svc, ID: id}, kind, true
}

// Slice returns the instance's slice, "tenement-api-b:2c-prod.slice", which
// holds both its units. systemd reads '-' in a slice name as nesting, so the
// slice sits in the bucket slice tenement-api-b:2c.slice (see BucketSlice) in
// tenement-api.slice in tenement.slice, and a '-' inside a service name or id
// is escaped ("my-api:prod-2" → tenement-my\x2dapi-b:NN-prod\x2d2.slice) so
// that two instances can never share a slice.
//
// One cgroup around both units gives the instance one stable cgroup id for
// activity accounting: inbound connections count in the socket unit's cgroup
// (where systemd creates the listening sockets), the app's own connections in
// the service's, whose cgroup systemd re-creates at every wake.
func (i Instance) Slice() string {
	return Prefix + escapeUnitPart(i.Service) + "-" + i.Bucket() + "-" + escapeUnitPart(i.ID) + ".slice"
}

// Buckets is how many bucket slices a service's instance slices are spread
// over. systemd 252 does work over every sibling of a unit's slice when it
// starts or stops a unit in it (cgroup realization walks a slice's members),
// so 10,000 instance slices side by side in tenement-api.slice made each
// create and each removal cost in proportion to the number of instances:
// quadratic in total. Spread over 64 buckets, a slice has at most 64
// members at the service level and n/64 in a bucket.
const Buckets = 64

// Bucket returns the instance's bucket, "b:2c": FNV-1a of the id modulo
// Buckets, in hex. ':' can appear in no escaped service name or id, so a
// bucket's slice can never be an instance's.
func (i Instance) Bucket() string {
	h := uint32(2166136261)
	for k := 0; k < len(i.ID); k++ {
		h ^= uint32(i.ID[k])
		h *= 16777619
	}
	return fmt.Sprintf("b:%02x", h%Buckets)
}

// BucketSlice returns the slice of the instance's bucket,
// "tenement-api-b:2c.slice" (see Buckets).
func (i Instance) BucketSlice() string {
	return Prefix + escapeUnitPart(i.Service) + "-" + i.Bucket() + ".slice"
}

// LegacySlice returns the slice ten gave an instance before instance slices
// went into buckets, "tenement-api-prod.slice" directly in
// tenement-api.slice. An instance made so keeps it until it is removed;
// systemd.SliceDir finds its cgroup.
func (i Instance) LegacySlice() string {
	return Prefix + escapeUnitPart(i.Service) + "-" + escapeUnitPart(i.ID) + ".slice"
}

// ServiceSlice returns the slice that holds every bucket and instance slice
// of the service, "tenement-api.slice" (see Slice).
func ServiceSlice(service string) string {
	return Prefix + escapeUnitPart(service) + ".slice"
}

// ServicePatterns are the ListUnitsByPatterns globs of the socket and
// service units of every instance of service. Service names hold no glob
// characters (config.CheckName).
func ServicePatterns(service string) []string {
	return []string{Prefix + service + "@*.socket", Prefix + service + "@*.service"}
}

// SliceCgroup returns the cgroup of the instance's slice relative to the
// root of the cgroup hierarchy:
// /tenement.slice/tenement-api.slice/tenement-api-b:2c.slice/tenement-api-b:2c-prod.slice.
func (i Instance) SliceCgroup() string {
	return "/" + strings.TrimSuffix(Prefix, "-") + ".slice/" + ServiceSlice(i.Service) + "/" + i.BucketSlice() + "/" + i.Slice()
}

// LegacySliceCgroup returns the cgroup of the instance's LegacySlice:
// /tenement.slice/tenement-api.slice/tenement-api-prod.slice.
func (i Instance) LegacySliceCgroup() string {
	return "/" + strings.TrimSuffix(Prefix, "-") + ".slice/" + ServiceSlice(i.Service) + "/" + i.LegacySlice()
}

// escapeUnitPart escapes s as systemd-escape does: every byte that is not an
// ASCII letter, digit, ':' or '_' (or '.' past the first byte) becomes \xNN.
func escapeUnitPart(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ':', c == '_', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	return b.String()
}
