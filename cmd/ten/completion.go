package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/tenhq/ten/apitype"
)

// CompletionCmd is `ten completion bash|zsh`.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh" help:"bash or zsh."`
}

// instanceArgs are the commands whose first argument is an instance.
var instanceArgs = map[string]bool{"stop": true, "restart": true, "weight": true, "health": true, "logs": true}

// Run prints a completion script built from the command model, so it never
// goes stale: commands, their flags, and live instance names from ten serve.
func (c *CompletionCmd) Run(k *kong.Context) error {
	root := k.Model.Node
	var cmds []string
	var cases strings.Builder
	for _, n := range root.Children {
		if n.Hidden {
			continue
		}
		names := append([]string{n.Name}, n.Aliases...)
		cmds = append(cmds, names...)
		words := flagWords(n)
		extra := ""
		if instanceArgs[n.Name] {
			extra = ` $(ten complete-instances 2>/dev/null)`
		}
		for _, sub := range n.Children {
			if !sub.Hidden {
				words = append(words, sub.Name)
			}
		}
		fmt.Fprintf(&cases, "\t%s) words=\"%s%s\" ;;\n", strings.Join(names, "|"), strings.Join(words, " "), extra)
	}
	sort.Strings(cmds)
	global := flagWords(root)
	script := fmt.Sprintf(`# ten completion for %[1]s: source <(ten completion %[1]s)
_ten() {
	local cur=${COMP_WORDS[COMP_CWORD]} cmd="" w words
	for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
		case $w in -*) ;; *) cmd=$w; break ;; esac
	done
	case "$cmd" in
	"") words="%[2]s %[3]s" ;;
%[4]s	*) words="" ;;
	esac
	COMPREPLY=($(compgen -W "$words %[3]s" -- "$cur"))
}
`, c.Shell, strings.Join(cmds, " "), strings.Join(global, " "), cases.String())
	if c.Shell == "zsh" {
		// The same text works sourced and as the file _ten in zsh's fpath
		// (the package's /usr/share/zsh/vendor-completions/_ten): compinit
		// reads #compdef, and the first completion runs this file as the
		// function _ten, which then completes that first word too.
		script = "#compdef ten\n" + strings.Replace(script, "_ten() {", "_ten_bash() {", 1) +
			"autoload -U +X bashcompinit && bashcompinit\ncomplete -F _ten_bash ten\n" +
			"if [[ ${funcstack[1]} == _ten ]]; then _bash_complete -F _ten_bash; fi\n"
	} else {
		script += "complete -F _ten ten\n"
	}
	fmt.Fprint(stdout, script)
	return nil
}

func flagWords(n *kong.Node) []string {
	var out []string
	for _, f := range n.Flags {
		if f.Hidden || f.Name == "help" {
			continue
		}
		out = append(out, "--"+f.Name)
	}
	return out
}

// CompleteInstancesCmd prints instance names for shell completion.
type CompleteInstancesCmd struct{}

// Run lists the instances the server knows, one per line; errors print nothing.
func (CompleteInstancesCmd) Run(ctx context.Context, g *Globals) error {
	var rows []apitype.Row
	if err := g.client().Do(ctx, "GET", "/api/instances", nil, &rows); err != nil {
		os.Exit(1)
	}
	for _, r := range rows {
		fmt.Fprintln(stdout, r.Instance)
	}
	return nil
}
