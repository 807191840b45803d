package main

import (
	"strings"
	"testing"

	"github.com/tenhq/ten/auth"
)

// ten token-gen prints tenement's lines, and the first line indented by two
// spaces (what tenement's scripts read: awk '/^  /{print $1; exit}') is the
// token alone.
func TestMintedText(t *testing.T) {
	const secret = "ten_0123456789abcdef_s3cr3t"
	for _, c := range []struct {
		tok  auth.Minted
		want string
	}{
		{auth.Minted{Token: auth.Token{ID: "0123456789abcdef"}, Secret: secret, AdminFile: "/srv/data/api_token"},
			"Generated admin API token:\n\n  " + secret + "\n\nToken saved to /srv/data/api_token\nUse it in the Authorization header: Bearer " + secret + "\n"},
		{auth.Minted{Token: auth.Token{ID: "0123456789abcdef"}, Secret: secret},
			"Generated admin API token:\n\n  " + secret + "\n\nUse it in the Authorization header: Bearer " + secret + "\n"},
		{auth.Minted{Token: auth.Token{ID: "0123456789abcdef", Tenant: "alice"}, Secret: secret},
			"Generated tenant token for 'alice':\n\n  " + secret + "\n\nThis token can only access instances/logs for tenant 'alice' (SERVICE:alice).\nDeploy and route operations are admin-only.\n"},
	} {
		got := mintedText(c.tok)
		if got != c.want {
			t.Errorf("got:\n%s\nwant:\n%s", got, c.want)
		}
		var first string
		for _, l := range strings.Split(got, "\n") {
			if strings.HasPrefix(l, "  ") {
				first = strings.Fields(l)[0]
				break
			}
		}
		if first != secret {
			t.Errorf("the first line indented by two spaces holds %q, want the token", first)
		}
	}
}
