package main

import (
	"bufio"
	"encoding/json"
	"os"
)

// stdout is what the client commands print, written out when the command
// ends (main flushes it) or when 64 KiB have gathered. Scripts read ten's
// output through `| head -1` or `| grep -q`, which close the pipe after the
// line they want; output written in one go reaches the pipe before that,
// where a write per line could come after it and end ten with SIGPIPE
// (exit status 141, a failure under `set -o pipefail`). `ten logs -f`
// flushes after each entry; `ten serve`, `install`, `uninstall` and
// `caddy` write to os.Stdout as they go.
var stdout = bufio.NewWriterSize(os.Stdout, 64<<10)

// printJSON prints v as indented JSON (--json).
func printJSON(v any) error {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
