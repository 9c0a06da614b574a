package gateway

import (
	"errors"
	"testing"

	"github.com/marketcast/marketcast/protocol"
)

func TestDecodeRequest(t *testing.T) {
	ok := func(in string, check func(*Request) bool) {
		t.Helper()
		r, err := DecodeRequest([]byte(in))
		if err != nil || !check(r) {
			t.Fatalf("%s: %+v %v", in, r, err)
		}
	}
	ok(`{"type":"auth","data":{"token":"abc"}}`, func(r *Request) bool { return r.authToken() == "abc" })
	ok(`{"type":"auth","token":"xyz"}`, func(r *Request) bool { return r.authToken() == "xyz" })
	ok(` {"type":"subscribe","id":12,"user_id":1} `, func(r *Request) bool {
		u, ok := r.userID()
		return string(r.ID) == "12" && u == "1" && ok
	})
	ok(`{"type":"x","user_id":"u-1","since":5}`, func(r *Request) bool {
		u, _ := r.userID()
		return u == "u-1" && *r.Since == 5
	})
	ok(`{"type":"x","user_id":1.5}`, func(r *Request) bool { _, ok := r.userID(); return !ok })

	bad := func(in, code string) {
		t.Helper()
		_, err := DecodeRequest([]byte(in))
		var re *requestError
		if !errors.As(err, &re) || re.code != code || re.message == "" {
			t.Fatalf("%s: got %v; want %s", in, err, code)
		}
	}
	bad(``, protocol.CodeInvalidJSON)
	bad(`{`, protocol.CodeInvalidJSON)
	bad(`nul`, protocol.CodeInvalidJSON)
	bad(`null`, protocol.CodeInvalidMessage)
	bad(`[]`, protocol.CodeInvalidMessage)
	bad(`{}`, protocol.CodeInvalidMessage)
	bad(`{"type":1}`, protocol.CodeInvalidMessage)
	bad(`{"type":"x","id":{}}`, protocol.CodeInvalidMessage)
	bad(`{"type":"x","symbols":[1]}`, protocol.CodeInvalidMessage)
}

// FuzzDecodeRequest: no input may panic the decoder, and whatever it
// accepts has a type and a well-formed id.
func FuzzDecodeRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.code == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if r.Type == "" || (len(r.ID) > 0 && !validID(r.ID)) {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		_ = r.authToken()
		_, _ = r.userID()
	})
}
