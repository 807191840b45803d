package units

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/godbus/dbus/v5"

	"github.com/tenhq/ten/config"
)

// validUnitName reports whether name is a unit name systemd accepts
// (unit_name_is_valid: at most 255 bytes of [A-Za-z0-9:_.\-\\], one '@' at
// most, a known suffix, a non-empty prefix).
func validUnitName(name string) bool {
	if len(name) == 0 || len(name) > 255 {
		return false
	}
	dot := strings.LastIndexByte(name, '.')
	if dot <= 0 {
		return false
	}
	switch name[dot+1:] {
	case "service", "socket", "slice":
	default:
		return false
	}
	stem := name[:dot]
	if strings.Count(stem, "@") > 1 || strings.HasPrefix(stem, "@") {
		return false
	}
	for i := 0; i < len(stem); i++ {
		c := stem[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(":-_.\\@", c) >= 0) {
			return false
		}
	}
	return true
}

// FuzzParseInstance checks that an accepted SERVICE:ID round-trips through
// String, names valid systemd units that FromUnit maps back to it, and a
// slice of its own.
func FuzzParseInstance(f *testing.F) {
	for _, s := range []string{"api:prod", "my-api:prod-2", "api", "api:", ":prod", "api:../x", "api:a/b", "API:prod", "api:prod:x", "a.b:c", "a:" + strings.Repeat("x", 63), "x-y:z-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		inst, err := ParseInstance(s)
		if err != nil {
			if inst != (Instance{}) {
				t.Fatalf("ParseInstance(%q) returned %v with error %v", s, inst, err)
			}
			if !strings.HasPrefix(err.Error(), "instance ") {
				t.Fatalf("error %q does not say what was parsed", err)
			}
			return
		}
		if inst.String() != s {
			t.Fatalf("ParseInstance(%q).String() = %q", s, inst.String())
		}
		if again, err := ParseInstance(inst.String()); err != nil || again != inst {
			t.Fatalf("round trip of %q: %v %v", s, again, err)
		}
		for unit, kind := range map[string]string{inst.ServiceUnit(): KindService, inst.SocketUnit(): KindSocket} {
			if !validUnitName(unit) {
				t.Fatalf("%q names invalid unit %q", s, unit)
			}
			back, k, ok := FromUnit(unit)
			if !ok || back != inst || k != kind {
				t.Fatalf("FromUnit(%q) = %v %q %v, want %v %q", unit, back, k, ok, inst, kind)
			}
		}
		if sl := inst.Slice(); !validUnitName(sl) || strings.Count(sl, "-") != 3 {
			// Two dashes exactly: tenement-SVC-ID.slice, nested twice.
			t.Fatalf("%q has slice %q", s, sl)
		}
		if cg := inst.SliceCgroup(); !strings.HasSuffix(cg, "/"+inst.Slice()) || strings.Count(cg, "/") != 4 {
			t.Fatalf("%q has slice cgroup %q", s, cg)
		}
	})
}

// FuzzFromUnit checks that a unit name FromUnit accepts is exactly the name
// ten would give that instance's unit of that kind: no two names map to one
// instance, so adopting units never confuses two instances.
func FuzzFromUnit(f *testing.F) {
	for _, s := range []string{"tenement-api@prod.service", "tenement-my-api@prod-2.socket", "tenement-api@prod.timer", "other-api@prod.service", "tenement-api.service", "tenement-api@.service", "tenement-a@b@c.service", "tenement-A@b.service", "tenement-api@prod.service.service"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		inst, kind, ok := FromUnit(name)
		if !ok {
			if inst != (Instance{}) || kind != "" {
				t.Fatalf("FromUnit(%q) rejected but returned %v %q", name, inst, kind)
			}
			return
		}
		want := inst.ServiceUnit()
		if kind == KindSocket {
			want = inst.SocketUnit()
		}
		if want != name {
			t.Fatalf("FromUnit(%q) = %v %s, which is unit %q", name, inst, kind, want)
		}
		if _, err := ParseInstance(inst.String()); err != nil {
			t.Fatalf("FromUnit(%q) = %v, which ParseInstance rejects: %v", name, inst, err)
		}
	})
}

// FuzzBuild checks that every instance of a tenement.toml that config
// accepts can be planned, and that the plan is something systemd takes:
// valid unit names, absolute socket paths, and D-Bus strings (valid UTF-8,
// no NUL byte) everywhere.
func FuzzBuild(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("[service.a]\ncommand = \"/bin/a {port} {socket}\"\nsocket = \"/run/tenement-app/{name}-{id}/{id}.sock\"\nworkdir = \"{data_dir}/w\"\n[service.a.env]\nK = \"{name}:{id}\"\n[instances]\na = [\"x-1\", \"y\"]\n"))
	// D-Bus strings cannot hold NUL; systemd takes environment names of
	// letters, digits and '_' only.
	f.Add([]byte("[service.a]\ncommand = \"/bin/a\\u0000b\"\n[instances]\na = [\"x\"]\n"))
	f.Add([]byte("[service.a]\ncommand = \"/bin/a\"\n[service.a.env]\nK = \"a\\u0000b\"\n[instances]\na = [\"x\"]\n"))
	f.Add([]byte("[service.a]\ncommand = \"/bin/a\"\n[service.a.env]\n\"my-var\" = \"1\"\n[instances]\na = [\"x\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("/etc/ten/tenement.toml", data)
		if err != nil {
			return
		}
		opts := Options{Port: 20001, Shim: "/run/tenement/.bin/ten", Cat: "/usr/bin/systemd-cat", Runsc: "/usr/bin/runsc"}
		for svcName, ids := range cfg.Instances {
			svc := cfg.Services[svcName]
			for _, id := range ids {
				if len(svc.Listen) > 0 {
					opts.Listen, opts.L4Sockets = svc.Listen, []string{"127.0.0.1:30001"}
				}
				p, err := Build(cfg, svc, id, opts)
				if err != nil {
					t.Fatalf("accepted instance %s:%s cannot be planned: %v\n%s", svcName, id, err, data)
				}
				if !validUnitName(p.Instance.ServiceUnit()) || !validUnitName(p.Instance.SocketUnit()) || !validUnitName(p.Slice) {
					t.Fatalf("plan of %s names invalid units", p.Instance)
				}
				if !filepath.IsAbs(p.Listen) || len(p.Argv) == 0 {
					t.Fatalf("plan of %s: listen %q, argv %q", p.Instance, p.Listen, p.Argv)
				}
				for _, kv := range p.Env {
					if k, _, _ := strings.Cut(kv, "="); !validEnvName(k) {
						t.Fatalf("plan of %s sets %q, which systemd refuses", p.Instance, kv)
					}
				}
				for _, pr := range append(append([]any{}, anySlice(p.Socket)...), anySlice(p.Service)...) {
					checkDBusStrings(t, p.Instance, reflect.ValueOf(pr))
				}
			}
		}
	})
}

func anySlice[T any](in []T) []any {
	out := make([]any, len(in))
	for i, v := range in {
		out[i] = v
	}
	return out
}

// checkDBusStrings fails the test when a string anywhere in v (a unit
// property) is not a valid D-Bus string.
func checkDBusStrings(t *testing.T, inst Instance, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if !v.IsNil() {
			checkDBusStrings(t, inst, v.Elem())
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(dbus.Variant{}) {
			checkDBusStrings(t, inst, reflect.ValueOf(v.Interface().(dbus.Variant).Value()))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				checkDBusStrings(t, inst, v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // bytes: any value
		}
		for i := 0; i < v.Len(); i++ {
			checkDBusStrings(t, inst, v.Index(i))
		}
	case reflect.String:
		if s := v.String(); !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			t.Fatalf("plan of %s has a string D-Bus cannot carry: %q", inst, s)
		}
	}
}

// validEnvName is systemd's env_name_is_valid: letters, digits and '_',
// not starting with a digit.
func validEnvName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
