package auth

import "strings"

// BearerToken returns the token of an Authorization header value
// "Bearer TOKEN", without surrounding white space; ok is false when the
// value is not a bearer credential or carries no token. The scheme is
// matched as the ten CLI and tenement's clients send it.
func BearerToken(header string) (tok string, ok bool) {
	tok, ok = strings.CutPrefix(header, "Bearer ")
	tok = strings.TrimSpace(tok)
	if !ok || tok == "" {
		return "", false
	}
	return tok, true
}
