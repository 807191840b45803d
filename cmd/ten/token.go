package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/auth"
)

// TokenGenCmd is `ten token-gen [--tenant X] [--description D]` (tenement's verb).
type TokenGenCmd struct {
	Tenant      string `help:"Make a tenant token: it reaches only instances SERVICE:TENANT. Without it: an admin token."`
	Description string `help:"What the token is for (shown by ten token list)."`
	Remote      bool   `help:"Ask the server at --server over the API instead of writing the token store in the data dir (for a server on another machine; always so for a fleet node, whose tokens live in etcd)."`
}

// fleetNode reports whether the config makes this machine a fleet node.
func (g *Globals) fleetNode() bool {
	c, err := g.loadConfig()
	return err == nil && c.Fleet.Enabled()
}

// Run makes a token and prints it once. As in tenement it writes the token
// store in the data dir itself, so it works before ten serve ever ran; a
// running ten serve accepts the token at once. The token is printed alone
// on a line indented by two spaces, where tenement's users' scripts look.
func (c *TokenGenCmd) Run(ctx context.Context, g *Globals) error {
	var tok auth.Minted
	// A fleet's tokens are made by ten serve, which records them in etcd
	// for every node: the token store in the data dir is this node's only.
	if c.Remote || g.fleetNode() {
		var nt apitype.NewToken
		if err := g.client().Do(ctx, "POST", "/api/tokens", apitype.TokenRequest{Tenant: c.Tenant, Admin: c.Tenant == "", Description: c.Description}, &nt); err != nil {
			return err
		}
		tok = auth.Minted{Token: auth.Token{ID: nt.ID, Tenant: nt.Tenant, Description: nt.Description, Created: nt.Created}, Secret: nt.Secret}
	} else {
		var err error
		if tok, err = auth.Mint(g.dataDir(), c.Tenant, c.Description, auth.Options{}); err != nil {
			return err
		}
	}
	if g.JSON {
		return printJSON(tok)
	}
	fmt.Fprint(stdout, mintedText(tok))
	fmt.Fprintf(os.Stderr, "It is shown only this once. Revoke it with: ten token revoke %s\n", tok.ID)
	return nil
}

// mintedText is tenement's token-gen output, line for line: a heading, the
// token alone on a line indented by two spaces (where its users' scripts
// read it, awk '/^  /'), then where it was saved or what it may do.
func mintedText(tok auth.Minted) string {
	if tok.Tenant != "" {
		return fmt.Sprintf("Generated tenant token for '%s':\n\n  %s\n\nThis token can only access instances/logs for tenant '%s' (SERVICE:%s).\nDeploy and route operations are admin-only.\n",
			tok.Tenant, tok.Secret, tok.Tenant, tok.Tenant)
	}
	s := fmt.Sprintf("Generated admin API token:\n\n  %s\n\n", tok.Secret)
	if tok.AdminFile != "" {
		s += fmt.Sprintf("Token saved to %s\n", tok.AdminFile)
	}
	return s + fmt.Sprintf("Use it in the Authorization header: Bearer %s\n", tok.Secret)
}

// TokenCmd is `ten token list|revoke`.
type TokenCmd struct {
	List   TokenListCmd   `cmd:"" aliases:"ls" help:"List API tokens (never their secrets)."`
	Revoke TokenRevokeCmd `cmd:"" help:"Revoke an API token: requests with it fail from now on."`
}

// TokenListCmd is `ten token list`.
type TokenListCmd struct{}

// Run lists the tokens.
func (c *TokenListCmd) Run(ctx context.Context, g *Globals) error {
	var toks []apitype.Token
	if err := g.client().Do(ctx, "GET", "/api/tokens", nil, &toks); err != nil {
		return err
	}
	if g.JSON {
		return printJSON(toks)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTENANT\tCREATED\tLAST USED\tDESCRIPTION")
	for _, t := range toks {
		tenant := t.Tenant
		if tenant == "" {
			tenant = "(admin)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, tenant, tokenTime(t.Created), tokenTime(t.LastUsed), t.Description)
	}
	return tw.Flush()
}

// TokenRevokeCmd is `ten token revoke ID`.
type TokenRevokeCmd struct {
	ID string `arg:"" help:"Token id (from ten token list), or the token itself."`
}

// Run revokes the token.
func (c *TokenRevokeCmd) Run(ctx context.Context, g *Globals) error {
	var out map[string]string
	if err := g.client().Do(ctx, "DELETE", "/api/tokens/"+url.PathEscape(c.ID), nil, &out); err != nil {
		return err
	}
	if g.JSON {
		return printJSON(out)
	}
	fmt.Fprintf(stdout, "revoked token %s\n", out["revoked"])
	return nil
}

func tokenTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
