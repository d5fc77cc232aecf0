package quorum

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// parseConflictVersion parses TS/WRITER[/deleted][=VALUE] (see
// testdata/conflicts.txt).
func parseConflictVersion(s string) (Version, error) {
	body, value, hasValue := strings.Cut(s, "=")
	parts := strings.Split(body, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Version{}, fmt.Errorf("version %q: want TS/WRITER[/deleted][=VALUE]", s)
	}
	ts, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return Version{}, fmt.Errorf("version %q: %v", s, err)
	}
	w, err := strconv.Atoi(parts[1])
	if err != nil || w < 0 || w > MaxWriterID {
		return Version{}, fmt.Errorf("version %q: bad writer id", s)
	}
	v := Version{Timestamp: ts<<WriterIDBits | int64(w)}
	if len(parts) == 3 {
		if parts[2] != "deleted" || hasValue {
			return Version{}, fmt.Errorf("version %q: only \"deleted\" (without a value) may follow the writer", s)
		}
		v.Deleted = true
	}
	if hasValue {
		v.Value = []byte(value)
	}
	return v, nil
}

func TestConflictsData(t *testing.T) {
	const path = "testdata/conflicts.txt"
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	cases := 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pos := fmt.Sprintf("%s:%d", path, n)
		lhs, rhs, ok := strings.Cut(line, "->")
		words := strings.Fields(lhs)
		if !ok || len(words) != 3 {
			t.Fatalf("%s: want WINDOW A B -> conflict|none, got %q", pos, line)
		}
		window, err := time.ParseDuration(words[0])
		if err != nil {
			t.Fatalf("%s: %v", pos, err)
		}
		a, err := parseConflictVersion(words[1])
		if err != nil {
			t.Fatalf("%s: %v", pos, err)
		}
		b, err := parseConflictVersion(words[2])
		if err != nil {
			t.Fatalf("%s: %v", pos, err)
		}
		var want bool
		switch w := strings.TrimSpace(rhs); w {
		case "conflict":
			want = true
		case "none":
		default:
			t.Fatalf("%s: want conflict or none, got %q", pos, w)
		}
		if got := Conflicting(a, b, window); got != want {
			t.Errorf("%s: Conflicting(%v, %v, %v) = %v, want %v", pos, a, b, window, got, want)
		}
		if got := Conflicting(b, a, window); got != want {
			t.Errorf("%s: swapped: Conflicting(%v, %v, %v) = %v, want %v", pos, b, a, window, got, want)
		}
		cases++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cases < 10 {
		t.Fatalf("%s: only %d cases", path, cases)
	}
}

func TestWriterOf(t *testing.T) {
	for _, c := range []struct {
		ts   int64
		want int
	}{{0, 0}, {1, 1}, {63, 63}, {64, 0}, {1700000000000000<<WriterIDBits | 42, 42}} {
		if got := WriterOf(c.ts); got != c.want {
			t.Errorf("WriterOf(%d) = %d, want %d", c.ts, got, c.want)
		}
	}
}
