package quorum

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Level is a consistency level across regions. It says which regions a call
// waits for and what consistency it uses inside each of them; see the table
// in the package documentation. The zero Level is not valid: use one of the
// constants, or [ParseLevel].
type Level uint8

// The consistency levels, in the order of the design table. Their numeric
// values are stable and start at 1, so that the zero Level means "not set".
const (
	// LocalOne succeeds when the home region acks at LOCAL_ONE; the other
	// regions are written in the background (hint on failure).
	LocalOne Level = iota + 1
	// LocalQuorum, the usual default, succeeds when the home region acks at
	// LOCAL_QUORUM; the other regions are written in the background.
	LocalQuorum
	// Quorum succeeds when a majority of regions (R/2+1) ack at LOCAL_QUORUM;
	// the call waits on every region but returns once the majority is known.
	Quorum
	// EachQuorum succeeds only when every region acks at LOCAL_QUORUM. A
	// region that fails gets a hint, and the call fails naming it.
	EachQuorum
	// All succeeds only when every region acks at ALL (every replica in every
	// region).
	All
	// Any (writes only) succeeds when the home region acks at LOCAL_ONE, or,
	// if it fails, when the hint for the home region is durable.
	Any
)

// levelInfo holds everything that differs between levels, indexed by Level.
// Index 0 is the invalid zero Level.
var levelInfo = [...]struct {
	name   string   // Cassandra spelling
	words  []string // lower-case words of the name, for ParseLevel
	region string   // consistency used inside each synchronously written region
}{
	{},
	LocalOne:    {"LOCAL_ONE", []string{"local", "one"}, "LOCAL_ONE"},
	LocalQuorum: {"LOCAL_QUORUM", []string{"local", "quorum"}, "LOCAL_QUORUM"},
	Quorum:      {"QUORUM", []string{"quorum"}, "LOCAL_QUORUM"},
	EachQuorum:  {"EACH_QUORUM", []string{"each", "quorum"}, "LOCAL_QUORUM"},
	All:         {"ALL", []string{"all"}, "ALL"},
	Any:         {"ANY", []string{"any"}, "LOCAL_ONE"},
}

// ErrUnknownLevel is the error [ParseLevel] and [Level.UnmarshalText] wrap
// when a name is not a consistency level, and [Level.MarshalText] wraps for
// a Level that is not one of the constants. Test for it with errors.Is.
var ErrUnknownLevel = errors.New("quorum: unknown consistency level")

// validNames is the list of accepted names that error messages show.
const validNames = "LOCAL_ONE, LOCAL_QUORUM, QUORUM, EACH_QUORUM, ALL, ANY"

// Levels returns all valid levels, in the order of their constants.
func Levels() []Level {
	return []Level{LocalOne, LocalQuorum, Quorum, EachQuorum, All, Any}
}

// ParseLevel returns the level named by s. Case is ignored, surrounding white
// space is ignored, and the words of a name may be joined by '_', '-', one
// space, or nothing, so "LOCAL_QUORUM", "local-quorum", "local quorum",
// "LocalQuorum" and "localquorum" all name [LocalQuorum]. Any other string
// returns an error that wraps [ErrUnknownLevel] and lists the valid names.
func ParseLevel(s string) (Level, error) {
	t := strings.TrimSpace(s)
	for _, l := range Levels() {
		words := levelInfo[l].words
		for _, sep := range [...]string{"_", "-", " ", ""} {
			if strings.EqualFold(t, strings.Join(words, sep)) {
				return l, nil
			}
		}
	}
	return 0, fmt.Errorf("%w %q: use one of %s (case-insensitive; words may also be joined by '-', a space, or nothing)",
		ErrUnknownLevel, s, validNames)
}

// String returns the level's Cassandra spelling, such as "LOCAL_QUORUM", which
// [ParseLevel] accepts. A Level that is not valid prints as "Level(N)".
func (l Level) String() string {
	if !l.Valid() {
		return "Level(" + strconv.Itoa(int(l)) + ")"
	}
	return levelInfo[l].name
}

// Valid reports whether l is one of the six level constants.
func (l Level) Valid() bool {
	return l >= LocalOne && l <= Any
}

// ValidForRead reports whether l is valid for a read: every valid level
// except [Any], which only makes sense for writes.
func (l Level) ValidForRead() bool {
	return l.Valid() && l != Any
}

// RegionConsistency returns the name of the Cassandra consistency level used
// inside each region that a call at level l reaches: "LOCAL_ONE" for
// [LocalOne] and [Any], "ALL" for [All], and "LOCAL_QUORUM" for the others.
// The name is the one gocql.ParseConsistency accepts. It returns "" if l is
// not valid.
func (l Level) RegionConsistency() string {
	if !l.Valid() {
		return ""
	}
	return levelInfo[l].region
}

// MarshalText implements [encoding.TextMarshaler], so that a Level is written
// by name in JSON, YAML and flags. It fails, wrapping [ErrUnknownLevel], for a
// Level that is not valid, including the zero Level.
func (l Level) MarshalText() ([]byte, error) {
	if !l.Valid() {
		return nil, fmt.Errorf("%w: cannot marshal %s; use one of %s", ErrUnknownLevel, l, validNames)
	}
	return []byte(levelInfo[l].name), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseLevel]. On
// error *l is left unchanged.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}
