package quorum

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// spellings returns the names ParseLevel must accept for l: its words joined
// by '_', '-', ' ' or nothing, in upper, lower and capitalized ("LocalQuorum")
// case.
func spellings(l Level) []string {
	words := strings.Split(strings.ToLower(l.String()), "_")
	title := make([]string, len(words))
	for i, w := range words {
		title[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	var out []string
	for _, sep := range []string{"_", "-", " ", ""} {
		lower := strings.Join(words, sep)
		out = append(out, lower, strings.ToUpper(lower), strings.Join(title, sep))
	}
	return out
}

func TestParseLevelSpellings(t *testing.T) {
	// The spellings the API promises, written out for one level.
	for _, s := range []string{"LOCAL_QUORUM", "local-quorum", "LocalQuorum", "localquorum", "local quorum", "Local_Quorum", "  LOCAL_QUORUM\n"} {
		if l, err := ParseLevel(s); err != nil || l != LocalQuorum {
			t.Errorf("ParseLevel(%q) = %v, %v; want LOCAL_QUORUM", s, l, err)
		}
	}
	n := 0
	for _, l := range Levels() {
		for _, s := range spellings(l) {
			n++
			got, err := ParseLevel(s)
			if err != nil || got != l {
				t.Errorf("ParseLevel(%q) = %v, %v; want %v", s, got, err, l)
			}
		}
	}
	if n != 6*12 {
		t.Fatalf("checked %d spellings, want %d", n, 6*12)
	}
}

func TestLevelStrings(t *testing.T) {
	want := map[Level][2]string{ // String, RegionConsistency
		LocalOne:    {"LOCAL_ONE", "LOCAL_ONE"},
		LocalQuorum: {"LOCAL_QUORUM", "LOCAL_QUORUM"},
		Quorum:      {"QUORUM", "LOCAL_QUORUM"},
		EachQuorum:  {"EACH_QUORUM", "LOCAL_QUORUM"},
		All:         {"ALL", "ALL"},
		Any:         {"ANY", "LOCAL_ONE"},
		0:           {"Level(0)", ""},
		7:           {"Level(7)", ""},
		255:         {"Level(255)", ""},
	}
	for l, w := range want {
		if got := l.String(); got != w[0] {
			t.Errorf("Level(%d).String() = %q, want %q", uint8(l), got, w[0])
		}
		if got := l.RegionConsistency(); got != w[1] {
			t.Errorf("%v.RegionConsistency() = %q, want %q", l, got, w[1])
		}
		if got, wantValid := l.Valid(), w[1] != ""; got != wantValid {
			t.Errorf("%v.Valid() = %v", l, got)
		}
		if got, wantRead := l.ValidForRead(), w[1] != "" && l != Any; got != wantRead {
			t.Errorf("%v.ValidForRead() = %v", l, got)
		}
	}
	ls := Levels()
	if len(ls) != 6 {
		t.Fatalf("Levels() = %v", ls)
	}
	for i, l := range ls {
		if l != Level(i+1) {
			t.Errorf("Levels()[%d] = %v, want %v", i, l, Level(i+1))
		}
	}
	ls[0] = 0
	if Levels()[0] != LocalOne {
		t.Error("Levels() shares its slice")
	}
}

func TestParseLevelUnknown(t *testing.T) {
	for _, s := range []string{
		"", " ", "one", "ONE", "local", "LOCAL_SERIAL", "SERIAL", "TWO", "quorum2", "LOCAL__QUORUM",
		"_QUORUM", "QUORUM_", "LOCAL_ QUORUM", "local\tquorum", "L0CAL_QUORUM", "Level(2)", "2", "each-quorum-",
		"LOCAL_-QUORUM",
	} {
		l, err := ParseLevel(s)
		if err == nil {
			t.Errorf("ParseLevel(%q) = %v, want an error", s, l)
			continue
		}
		if l != 0 {
			t.Errorf("ParseLevel(%q) returned %v with its error, want 0", s, l)
		}
		if !errors.Is(err, ErrUnknownLevel) {
			t.Errorf("ParseLevel(%q) error %v does not wrap ErrUnknownLevel", s, err)
		}
		msg := err.Error()
		for _, name := range Levels() {
			if !strings.Contains(msg, name.String()) {
				t.Errorf("ParseLevel(%q) error %q does not list %s", s, msg, name)
			}
		}
		if !strings.Contains(msg, strconv.Quote(s)) {
			t.Errorf("ParseLevel(%q) error %q does not quote the input", s, msg)
		}
	}
}

func TestLevelText(t *testing.T) {
	type config struct {
		Level Level `json:"level"`
	}
	for _, l := range Levels() {
		b, err := json.Marshal(config{l})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"level":"` + l.String() + `"}`; string(b) != want {
			t.Errorf("json.Marshal = %s, want %s", b, want)
		}
		var c config
		if err := json.Unmarshal(b, &c); err != nil || c.Level != l {
			t.Errorf("json.Unmarshal(%s) = %v, %v", b, c.Level, err)
		}
	}
	var c config
	if err := json.Unmarshal([]byte(`{"level":"each-quorum"}`), &c); err != nil || c.Level != EachQuorum {
		t.Errorf("json.Unmarshal each-quorum = %v, %v", c.Level, err)
	}
	if _, err := json.Marshal(config{}); !errors.Is(err, ErrUnknownLevel) {
		t.Errorf("json.Marshal of the zero Level: error %v, want ErrUnknownLevel", err)
	}
	c.Level = All
	if err := json.Unmarshal([]byte(`{"level":"most"}`), &c); !errors.Is(err, ErrUnknownLevel) {
		t.Errorf("json.Unmarshal most: error %v, want ErrUnknownLevel", err)
	}
	if c.Level != All {
		t.Errorf("a failed UnmarshalText changed the level to %v", c.Level)
	}

	// Flags: flag.TextVar uses MarshalText for the default and
	// UnmarshalText for the argument.
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var l Level
	fs.TextVar(&l, "consistency", LocalQuorum, "level")
	if l != LocalQuorum {
		t.Errorf("flag default = %v", l)
	}
	if err := fs.Parse([]string{"-consistency", "each quorum"}); err != nil || l != EachQuorum {
		t.Errorf("flag parse = %v, %v", l, err)
	}
	if err := fs.Parse([]string{"-consistency", "most"}); err == nil {
		t.Error("flag parse of an unknown level did not fail")
	}
}

// FuzzParseLevel checks that ParseLevel never panics, that what it accepts
// round-trips through String and MarshalText, and that it accepts only
// strings that, without case, surrounding space and separators, spell a
// level's name.
func FuzzParseLevel(f *testing.F) {
	for _, l := range Levels() {
		for _, s := range spellings(l) {
			f.Add(s)
		}
	}
	for _, s := range []string{"", "LOCAL__QUORUM", "local\u017fquorum", "\xff", "Level(3)", " any "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLevel(s)
		if err != nil {
			if l != 0 || !errors.Is(err, ErrUnknownLevel) {
				t.Fatalf("ParseLevel(%q) = %v, %v", s, l, err)
			}
			return
		}
		if !l.Valid() {
			t.Fatalf("ParseLevel(%q) = invalid %v", s, l)
		}
		if back, err := ParseLevel(l.String()); err != nil || back != l {
			t.Fatalf("ParseLevel(%q) = %v, but ParseLevel(%q) = %v, %v", s, l, l.String(), back, err)
		}
		text, err := l.MarshalText()
		var u Level
		if err != nil || u.UnmarshalText(text) != nil || u != l {
			t.Fatalf("%v: MarshalText = %q, %v; UnmarshalText gives %v", l, text, err, u)
		}
		squash := func(r rune) rune {
			if r == '_' || r == '-' || unicode.IsSpace(r) {
				return -1
			}
			return unicode.ToLower(r)
		}
		// EqualFold folds a few non-ASCII letters (like U+017F, long s) to
		// ASCII ones; the names contain none of them, so plain lowering must
		// agree.
		if got, want := strings.Map(squash, s), strings.Map(squash, l.String()); got != want {
			t.Fatalf("ParseLevel(%q) = %v, but %q is not %q", s, l, got, want)
		}
	})
}
