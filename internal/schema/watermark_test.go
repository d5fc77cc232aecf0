package schema

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestSessionRoundTrip(t *testing.T) {
	for _, s := range []Session{
		{Registered: 1, Home: "a", RegistrationTTL: time.Minute},
		{Registered: 1 << 60, Closed: true, Home: "eu_west", RegistrationTTL: 1500 * time.Millisecond, Namespaces: []string{"users", "orders"}},
		{Exited: true, Namespaces: []string{"x"}},
	} {
		got, err := DecodeSession(EncodeSession(s))
		if err != nil {
			t.Fatalf("DecodeSession(EncodeSession(%+v)): %v", s, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Fatalf("round trip: got %+v, want %+v", got, s)
		}
	}
	good := EncodeSession(Session{Registered: 7, Home: "a", Namespaces: []string{"users"}})
	for name, b := range map[string][]byte{
		"empty":          nil,
		"format 2":       append([]byte{2}, good[1:]...),
		"unknown flag":   append([]byte{1, 4}, good[2:]...),
		"cut in a name":  good[:len(good)-2],
		"trailing bytes": append(append([]byte(nil), good...), 0),
	} {
		if _, err := DecodeSession(b); !errors.Is(err, ErrBadWatermark) {
			t.Errorf("%s: DecodeSession(%x) = %v, want ErrBadWatermark", name, b, err)
		}
	}
}
