package auth

import "strings"

// BearerToken returns the token of an Authorization header value
// "Bearer TOKEN" (the scheme in any case, white space around the token
// trimmed); ok is false when the value is not a bearer credential or
// carries no token.
func BearerToken(header string) (tok string, ok bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", false
	}
	return tok, true
}
