package cells

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// TieWrite is one write of a tie-table row.
type TieWrite struct {
	Timestamp int64
	// Deleted marks a deletion marker; Value is then unused.
	Deleted bool
	Value   []byte
	// TTL in seconds; 0 = none.
	TTL int64
	// Legacy marks a marker whose value is bound null (a cell tombstone).
	Legacy bool
}

// Tie is one row of the tie table (testdata/ties.txt): two writes of one
// row and what Cassandra keeps.
type Tie struct {
	Name string
	A, B TieWrite
	// Keeps is "a", "b" or "mixed".
	Keeps string
	// For "mixed": the row Cassandra keeps.
	MixedDeleted bool
	MixedValue   []byte // nil: null
}

// Kept returns the write whose row Cassandra keeps, or false for a mixed
// result.
func (t Tie) Kept() (TieWrite, bool) {
	switch t.Keeps {
	case "a":
		return t.A, true
	case "b":
		return t.B, true
	}
	return TieWrite{}, false
}

// HasLegacy reports whether either write is a legacy marker.
func (t Tie) HasLegacy() bool { return t.A.Legacy || t.B.Legacy }

// Columns returns what a Tidemark writer (or, for a legacy marker, an old
// one) binds for w, given the digest function and expiry (seconds, 0 =
// never) to record.
func (w TieWrite) Columns(digest func(deleted bool, value []byte) int64, expires int64) Columns {
	value := w.Value
	if w.Deleted {
		value = []byte{}
		if w.Legacy {
			value = nil
		}
	} else if value == nil {
		value = []byte{}
	}
	return Columns{
		Value:   value,
		Deleted: Bool(w.Deleted),
		Digest:  Bigint(digest(w.Deleted, w.Value)),
		Expires: Bigint(expires),
	}
}

// LoadTies reads a tie table.
func LoadTies(path string) ([]Tie, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Tie
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "|")
		if len(parts) != 4 {
			return nil, fmt.Errorf("%s:%d: want 4 fields separated by |, got %d", path, n, len(parts))
		}
		t := Tie{Name: strings.TrimSpace(parts[0])}
		if t.A, err = parseTieWrite(parts[1]); err != nil {
			return nil, fmt.Errorf("%s:%d: a: %w", path, n, err)
		}
		if t.B, err = parseTieWrite(parts[2]); err != nil {
			return nil, fmt.Errorf("%s:%d: b: %w", path, n, err)
		}
		keeps := strings.Fields(parts[3])
		switch {
		case len(keeps) == 1 && (keeps[0] == "a" || keeps[0] == "b"):
			t.Keeps = keeps[0]
		case len(keeps) == 3 && keeps[0] == "mixed":
			t.Keeps = "mixed"
			for _, kv := range keeps[1:] {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "deleted":
					t.MixedDeleted = v == "true"
				case "value":
					if v != "nil" {
						s, err := strconv.Unquote(v)
						if err != nil {
							return nil, fmt.Errorf("%s:%d: keeps value %s: %w", path, n, v, err)
						}
						t.MixedValue = []byte(s)
					}
				default:
					return nil, fmt.Errorf("%s:%d: keeps: unknown %q", path, n, kv)
				}
			}
		default:
			return nil, fmt.Errorf("%s:%d: keeps %q: want a, b or mixed deleted=… value=…", path, n, parts[3])
		}
		out = append(out, t)
	}
	return out, sc.Err()
}

func parseTieWrite(s string) (TieWrite, error) {
	var w TieWrite
	var haveTS, haveKind bool
	for _, f := range splitFields(strings.TrimSpace(s)) {
		k, v, hasValue := strings.Cut(f, "=")
		var err error
		switch {
		case k == "ts" && hasValue:
			w.Timestamp, err = strconv.ParseInt(v, 10, 64)
			haveTS = true
		case k == "value" && hasValue:
			var u string
			u, err = strconv.Unquote(v)
			w.Value, haveKind = []byte(u), true
		case k == "del" && !hasValue:
			w.Deleted, haveKind = true, true
		case k == "ttl" && hasValue:
			w.TTL, err = strconv.ParseInt(v, 10, 64)
		case k == "legacy" && !hasValue:
			w.Legacy = true
		default:
			return w, fmt.Errorf("unknown field %q", f)
		}
		if err != nil {
			return w, fmt.Errorf("%s: %w", f, err)
		}
	}
	switch {
	case !haveTS || !haveKind:
		return w, fmt.Errorf("%q: needs ts= and value= or del", s)
	case w.Legacy && !w.Deleted:
		return w, fmt.Errorf("%q: legacy applies to markers only", s)
	}
	return w, nil
}

// splitFields splits on spaces outside double quotes.
func splitFields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, escaped := false, false
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
		case r == '\\' && quoted:
			escaped = true
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
			continue
		}
		cur.WriteRune(r)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
