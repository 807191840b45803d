package man

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"strings"

	"github.com/tenhq/ten/config"
)

// Docs maps "Type.Field" of the config package to the field's doc comment;
// FieldDocs reads it from the package's source.
type Docs map[string]string

// FieldDocs reads the doc comments of the struct fields in the Go source
// files given (config/config.go, config/fleet.go).
func FieldDocs(files map[string][]byte) (Docs, error) {
	docs := Docs{}
	fset := token.NewFileSet()
	for name, src := range files {
		f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return false
			}
			for _, fl := range st.Fields.List {
				for _, id := range fl.Names {
					if fl.Doc != nil {
						docs[ts.Name.Name+"."+id.Name] = strings.TrimSpace(fl.Doc.Text())
					}
				}
			}
			return false
		})
	}
	return docs, nil
}

// table is one TOML table of tenement.toml(5).
type table struct {
	header string
	intro  string
	typ    reflect.Type // nil: intro only
}

var tables = []table{
	{"[settings]", "Settings of ten itself.", reflect.TypeFor[config.Settings]()},
	{"[settings.tls]", "HTTPS with certificates from an ACME CA, obtained by ten itself (certmagic): for the bare domain at start, for each host that routes to an instance or service on its first handshake, and with dns_provider wildcards through DNS-01.", reflect.TypeFor[config.TLS]()},
	{"[service.NAME]", "One service: every instance NAME:ID of it is a socket unit tenement-NAME@ID.socket and a service unit tenement-NAME@ID.service. NAME is lowercase letters, digits and '-'; ID is ASCII letters, digits, '-' and '_' (two IDs of a service may not differ only by case). In command, args, socket, workdir and env, {name}, {id}, {data_dir} (the instance's data directory), {port} and {socket} are replaced; every instance has PORT, SOCKET_PATH, DATA_DIR and TEN_INSTANCE in its environment.", reflect.TypeFor[config.Service]()},
	{"[service.NAME.env]", "KEY = \"value\" pairs: the app's environment; placeholders are replaced.", nil},
	{"[[service.NAME.mounts]]", "Host paths bound into the service's instances.", reflect.TypeFor[config.Mount]()},
	{"[instances]", "SERVICE = [\"ID\", ...]: instances ten spawns whenever it starts.", nil},
	{"[routing]", "Read for compatibility with tenement; ten routes by Host alone: {id}.{service}.DOMAIN reaches that instance, {service}.DOMAIN one of its instances by weight.", reflect.TypeFor[config.Routing]()},
	{"[fleet]", "Experimental: this node is one of several ten nodes sharing state through etcd. Absent (no etcd_endpoints), ten is a single server and never connects to etcd. See the README's Fleet section for what works today.", reflect.TypeFor[config.Fleet]()},
}

func tomlType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return tomlType(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Int:
		return "integer"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		return "array of " + tomlType(t.Elem()) + "s"
	case reflect.Map:
		return "table of " + tomlType(t.Elem()) + "s"
	}
	return t.Kind().String()
}

// Config renders tenement.toml(5): every key of every table, with its type
// and its doc comment (the Go field name replaced by the key). A key
// without a doc comment is an error, so a new key cannot go undocumented.
func Config(docs Docs, description string) (Page, error) {
	var b strings.Builder
	th(&b, "tenement.toml", "5", "ten manual")
	sh(&b, "NAME")
	b.WriteString("tenement.toml \\- configuration of ten (tenement's format)\n")
	sh(&b, "SYNOPSIS")
	b.WriteString("\\fI/etc/tenement/tenement.toml\\fR (the package's), or the first \\fItenement.toml\\fR found walking up from the working directory, or \\fB\\-\\-config\\fR\n")
	sh(&b, "DESCRIPTION")
	para(&b, description)
	for _, tb := range tables {
		sh(&b, strings.ToUpper(esc(tb.header)))
		para(&b, tb.intro)
		if tb.typ == nil {
			continue
		}
		for i := 0; i < tb.typ.NumField(); i++ {
			f := tb.typ.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if key == "" || key == "-" {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Struct || (ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct) || (ft.Kind() == reflect.Map && key == "env") {
				continue // a table of its own
			}
			doc, ok := docs[tb.typ.Name()+"."+f.Name]
			if !ok {
				return Page{}, fmt.Errorf("config.%s.%s (%s): no doc comment; tenement.toml(5) is made of them", tb.typ.Name(), f.Name, key)
			}
			doc = strings.Join(strings.Fields(doc), " ")
			if rest, ok := strings.CutPrefix(doc, f.Name+" "); ok {
				doc = "\\fB" + esc(key) + "\\fR " + esc(rest)
			} else {
				doc = esc(doc)
			}
			fmt.Fprintf(&b, ".TP\n\\fB%s\\fR (%s)\n%s\n", esc(key), tomlType(ft), doc)
		}
	}
	sh(&b, "EXAMPLE")
	b.WriteString(".nf\n" + esc(example) + ".fi\n")
	sh(&b, "SEE ALSO")
	b.WriteString("\\fBten\\fR(1), \\fBten\\-config\\fR(1), \\fBsystemd.exec\\fR(5), \\fBsystemd.resource\\-control\\fR(5)\n")
	return Page{Name: "tenement.toml", Section: "5", Text: b.String()}, nil
}

const example = `[settings]
data_dir = "/var/lib/tenement"
domain = "example.com"

[service.api]
command = "/srv/api/bin/api --port {port}"
health = "/health"
idle_timeout = 300
memory_limit_mb = 256

[service.api.env]
DATABASE_URL = "postgres:///api_{id}"

[instances]
api = ["prod"]
`
