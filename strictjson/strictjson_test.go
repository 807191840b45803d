package strictjson

import (
	"errors"
	"strings"
	"testing"

	"github.com/tenhq/ten/apitype"
)

type decodeProbe struct {
	Tenant string `json:"tenant,omitempty"`
	Admin  bool   `json:"admin,omitempty"`
	Weight *int   `json:"weight,omitempty"`
	N      int    `json:"n,omitempty"`
}

func TestDecodeStrict(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{``, "empty"},
		{`   `, "empty"},
		{`[]`, "must be a JSON object, not an array"},
		{`"x"`, "must be a JSON object, not a string"},
		{`{"tenent":"acme"}`, `unknown field "tenent"`},
		{`{"Tenant":"acme"}`, `unknown field "Tenant"`},
		{`{"tenant":null}`, `field "tenant" is null`},
		{`{"tenant":"a","tenant":"b"}`, `field "tenant" is given twice`},
		{`{"tenant":"a"} trailing`, "unexpected data after the JSON object"},
		{`{"tenant":"a"}{}`, "unexpected data after the JSON object"},
		{`{"tenant":"a"`, "ends too early"},
		{`{"tenant":1}`, `field "tenant": want a string, got number`},
		{`{"n":9223372036854775808}`, `field "n": want a whole number in range`},
		{`{"n":1.5}`, `field "n": want a whole number in range`},
		{`{"admin":"yes"}`, `field "admin": want true or false`},
		{`{"` + strings.Repeat("x", 5000) + `":1}`, `(5000 bytes)`},
	} {
		var v decodeProbe
		err := DecodeStrict([]byte(tc.body), &v)
		if err == nil || !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeStrict(%.40q) = %v; want ErrBadInput with %q", tc.body, err, tc.want)
		}
		if err != nil && len(err.Error()) > 300 {
			t.Errorf("DecodeStrict(%.40q): error of %d bytes echoes the input", tc.body, len(err.Error()))
		}
	}
	var v decodeProbe
	if err := DecodeStrict([]byte(" {\"tenant\":\"acme\",\"weight\":0}\n"), &v); err != nil || v.Tenant != "acme" || v.Weight == nil || *v.Weight != 0 {
		t.Errorf("good body: %+v %v", v, err)
	}
	var tr apitype.TokenRequest
	if err := DecodeStrict([]byte(`{"admin":true,"description":"ci"}`), &tr); err != nil || !tr.Admin {
		t.Errorf("token request: %+v %v", tr, err)
	}
	// Embedded structs' fields are known too.
	var nt apitype.NewToken
	if err := DecodeStrict([]byte(`{"id":"x","token":"y"}`), &nt); err != nil || nt.ID != "x" || nt.Secret != "y" {
		t.Errorf("embedded: %+v %v", nt, err)
	}
}

func TestClipError(t *testing.T) {
	long := strings.Repeat("é", 2000)
	got := ClipError(long)
	if len(got) > MaxErrorLen+40 || !strings.Contains(got, "bytes cut") {
		t.Errorf("ClipError: %d bytes", len(got))
	}
}

// FuzzDecodeStrict: whatever the body, DecodeStrict does not panic, its
// error is bounded and of ErrBadInput, and what it accepts is one object
// with known, non-null fields that decodes the same with encoding/json.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{`{"tenant":"acme"}`, `{"admin":true}`, `{"weight":5}`, `{"tenant":null}`, `{}`, `{"a":1}`, `{"n":1} x`, `[1]`, `{"tenant":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v decodeProbe
		err := DecodeStrict(b, &v)
		if err != nil {
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("error not ErrBadInput: %v", err)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if strings.Contains(string(b), "null") && !strings.Contains(string(b), `"`) {
			t.Fatalf("accepted a null: %q", b)
		}
	})
}
