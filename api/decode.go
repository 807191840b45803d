package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/tenhq/ten/apitype"
	"github.com/tenhq/ten/strictjson"
)

// MaxBodyBytes bounds every JSON request body of the API. The largest real
// body (a deploy or a token with a 200-character description) is a few
// hundred bytes.
const MaxBodyBytes = 64 << 10

// ErrBodyTooLarge means a request body went over MaxBodyBytes (413).
var ErrBodyTooLarge = fmt.Errorf("request body is larger than %d bytes", MaxBodyBytes)

// readBody reads r's body, at most MaxBodyBytes of it: a larger body is
// ErrBodyTooLarge and the connection is closed after the answer.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, ErrBodyTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %v", strictjson.ErrBadInput, err)
	}
	return b, nil
}

// decodeBody is how every handler reads its JSON body: bounded in size
// (413 above MaxBodyBytes), strict (strictjson.DecodeStrict). On failure it answers
// the request itself, naming example as the body's expected shape, and
// returns false; nothing has been done yet then.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, example string) bool {
	b, err := readBody(w, r)
	if err == nil {
		err = strictjson.DecodeStrict(b, v)
	}
	if err == nil {
		return true
	}
	if errors.Is(err, ErrBodyTooLarge) {
		writeJSON(w, http.StatusRequestEntityTooLarge, apitype.APIError{Error: err.Error()})
		return false
	}
	if !errors.Is(err, strictjson.ErrBadInput) {
		err = fmt.Errorf("%w: %v", strictjson.ErrBadInput, err)
	}
	writeErr(w, fmt.Errorf("%w (the body must be JSON like %s)", err, example))
	return false
}
