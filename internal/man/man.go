// Package man renders ten's man pages in roff (man(7) macros): ten(1) and
// one ten-COMMAND(1) per command, walked from the kong model of the CLI, and
// tenement.toml(5), walked from the config structs and their doc comments.
// The pages are committed in docs/man and a test fails when they drift.
package man

import (
	"fmt"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
)

// Page is one man page.
type Page struct {
	Name    string // ten-serve
	Section string // 1
	Text    string
}

// File is the page's file name, e.g. ten-serve.1.
func (p Page) File() string { return p.Name + "." + p.Section }

// esc escapes text for roff: backslashes, and a dot or quote that would
// start a request at the beginning of a line.
func esc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// opt renders an option or command word in bold with its hyphens as minus
// signs, as man pages spell options.
func opt(s string) string {
	return `\fB` + strings.ReplaceAll(esc(s), "-", `\-`) + `\fR`
}

func th(b *strings.Builder, name, section, title string) {
	fmt.Fprintf(b, ".TH %s %s \"\" \"ten\" %q\n", strings.ToUpper(strings.ReplaceAll(name, "-", `\-`)), section, title)
}

func sh(b *strings.Builder, title string) { fmt.Fprintf(b, ".SH %s\n", title) }

func para(b *strings.Builder, text string) {
	if text = strings.TrimSpace(text); text != "" {
		fmt.Fprintf(b, ".PP\n%s\n", esc(text))
	}
}

// Commands renders ten(1) and one page per visible command of app.
// description is the program's longer description for ten(1); files and
// see are the FILES section and extra SEE ALSO references of ten(1).
func Commands(app *kong.Application, description string, files [][2]string) []Page {
	var pages []Page
	var cmds []*kong.Node
	for _, n := range app.Children {
		if !n.Hidden {
			cmds = append(cmds, n)
		}
	}
	var b strings.Builder
	th(&b, app.Name, "1", "ten manual")
	sh(&b, "NAME")
	fmt.Fprintf(&b, "%s \\- %s\n", app.Name, esc(strings.TrimSuffix(app.Help, ".")))
	sh(&b, "SYNOPSIS")
	fmt.Fprintf(&b, "%s [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]\n", opt(app.Name))
	sh(&b, "DESCRIPTION")
	para(&b, description)
	sh(&b, "COMMANDS")
	for _, n := range cmds {
		fmt.Fprintf(&b, ".TP\n%s", opt(n.Name))
		if args := positionals(n); args != "" {
			fmt.Fprintf(&b, " %s", args)
		}
		fmt.Fprintf(&b, "\n%s See \\fB%s\\-%s\\fR(1).\n", esc(n.Help), app.Name, strings.ReplaceAll(n.Name, "-", `\-`))
	}
	sh(&b, "OPTIONS")
	b.WriteString("These apply to every command.\n")
	writeFlags(&b, app.Flags)
	if env := envs(app.Flags); len(env) > 0 {
		sh(&b, "ENVIRONMENT")
		for _, e := range env {
			fmt.Fprintf(&b, ".TP\n\\fB%s\\fR\n%s\n", esc(e[0]), esc(e[1]))
		}
	}
	if len(files) > 0 {
		sh(&b, "FILES")
		for _, f := range files {
			fmt.Fprintf(&b, ".TP\n\\fI%s\\fR\n%s\n", esc(f[0]), esc(f[1]))
		}
	}
	sh(&b, "SEE ALSO")
	var refs []string
	for _, n := range cmds {
		refs = append(refs, fmt.Sprintf("\\fB%s\\-%s\\fR(1)", app.Name, strings.ReplaceAll(n.Name, "-", `\-`)))
	}
	refs = append(refs, `\fBtenement.toml\fR(5)`, `\fBsystemctl\fR(1)`, `\fBsystemd.unit\fR(5)`)
	b.WriteString(strings.Join(refs, ",\n") + "\n")
	pages = append(pages, Page{Name: app.Name, Section: "1", Text: b.String()})

	for _, n := range cmds {
		pages = append(pages, command(app, n))
	}
	return pages
}

func command(app *kong.Application, n *kong.Node) Page {
	name := app.Name + "-" + n.Name
	var b strings.Builder
	th(&b, name, "1", "ten manual")
	sh(&b, "NAME")
	fmt.Fprintf(&b, "%s \\- %s\n", strings.ReplaceAll(name, "-", `\-`), esc(strings.TrimSuffix(firstSentence(n.Help), ".")))
	sh(&b, "SYNOPSIS")
	subs := visibleChildren(n)
	if len(subs) > 0 {
		for _, s := range subs {
			fmt.Fprintf(&b, "%s %s %s [\\fIOPTIONS\\fR]", opt(app.Name), opt(n.Name), opt(s.Name))
			if args := positionals(s); args != "" {
				fmt.Fprintf(&b, " %s", args)
			}
			b.WriteString("\n.br\n")
		}
	} else {
		fmt.Fprintf(&b, "%s %s [\\fIOPTIONS\\fR]", opt(app.Name), opt(n.Name))
		if args := positionals(n); args != "" {
			fmt.Fprintf(&b, " %s", args)
		}
		b.WriteString("\n")
	}
	sh(&b, "DESCRIPTION")
	para(&b, n.Help)
	para(&b, n.Detail)
	if len(n.Aliases) > 0 {
		para(&b, fmt.Sprintf("Also spelled: %s.", strings.Join(n.Aliases, ", ")))
	}
	if len(n.Positional) > 0 {
		sh(&b, "ARGUMENTS")
		for _, p := range n.Positional {
			fmt.Fprintf(&b, ".TP\n\\fI%s\\fR\n%s%s\n", esc(strings.ToUpper(p.Name)), esc(p.Help), enumText(p))
		}
	}
	for _, s := range subs {
		sh(&b, "COMMAND "+strings.ToUpper(s.Name))
		para(&b, s.Help)
		for _, p := range s.Positional {
			fmt.Fprintf(&b, ".TP\n\\fI%s\\fR\n%s%s\n", esc(strings.ToUpper(p.Name)), esc(p.Help), enumText(p))
		}
		writeFlags(&b, s.Flags)
	}
	if len(visibleFlags(n.Flags)) > 0 {
		sh(&b, "OPTIONS")
		writeFlags(&b, n.Flags)
	}
	b.WriteString(".PP\nThe options of \\fBten\\fR(1) apply too.\n")
	sh(&b, "SEE ALSO")
	fmt.Fprintf(&b, "\\fB%s\\fR(1), \\fBtenement.toml\\fR(5)\n", app.Name)
	return Page{Name: name, Section: "1", Text: b.String()}
}

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

func visibleChildren(n *kong.Node) []*kong.Node {
	var out []*kong.Node
	for _, c := range n.Children {
		if !c.Hidden {
			out = append(out, c)
		}
	}
	return out
}

func visibleFlags(fs []*kong.Flag) []*kong.Flag {
	var out []*kong.Flag
	for _, f := range fs {
		if !f.Hidden && f.Name != "help" {
			out = append(out, f)
		}
	}
	return out
}

func positionals(n *kong.Node) string {
	var out []string
	for _, p := range n.Positional {
		s := `\fI` + esc(strings.ToUpper(p.Name)) + `\fR`
		if p.IsCumulative() {
			s += "..."
		}
		if !p.Required {
			s = "[" + s + "]"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func enumText(v *kong.Value) string {
	if v.Enum == "" {
		return ""
	}
	return " One of: " + esc(strings.Join(v.EnumSlice(), ", ")) + "."
}

func writeFlags(b *strings.Builder, fs []*kong.Flag) {
	for _, f := range visibleFlags(fs) {
		b.WriteString(".TP\n")
		if f.Short != 0 {
			fmt.Fprintf(b, "%s, ", opt("-"+string(f.Short)))
		}
		b.WriteString(opt("--" + f.Name))
		if !f.IsBool() {
			fmt.Fprintf(b, " \\fI%s\\fR", esc(f.FormatPlaceHolder()))
		}
		b.WriteString("\n")
		text := esc(f.Help) + enumText(f.Value)
		if f.HasDefault && f.Default != "" {
			text += " Default: " + esc(f.Default) + "."
		}
		if len(f.Envs) > 0 {
			text += " Environment: " + esc(strings.Join(f.Envs, ", ")) + "."
		}
		b.WriteString(text + "\n")
	}
}

func envs(fs []*kong.Flag) [][2]string {
	var out [][2]string
	for _, f := range visibleFlags(fs) {
		for _, e := range f.Envs {
			out = append(out, [2]string{e, fmt.Sprintf("Sets --%s: %s", f.Name, f.Help)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}
