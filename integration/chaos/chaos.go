// Package chaos is the model half of Tidemark's randomized fault suite
// (integration/chaos_test.go): the history of every call two writers made,
// a checker that accepts exactly the final states Cassandra could have
// produced from that history, and the seeded generator of workloads and
// fault schedules. It does no I/O, so the checker is tested on its own.
//
// # The model
//
// Every write (a Put, a Delete, each entry of a PutBatch) is a version of
// its key: the timestamp the store gave it (store.WithVersionReport), a
// value or a deletion, and its absolute expiry. A write the store
// acknowledged must be applied in every region eventually; a write that
// failed may or may not have been applied anywhere (a write that times out
// may still land, and its region gets a hint). Cassandra keeps, of the
// versions applied to a row, the greatest by its cell reconciliation, which
// quorum.Compare states for Tidemark's rows. So after every fault is
// healed, every hint replayed and one repair run, a key's state S — the
// same in every region — is possible exactly when S is the greatest version
// of some set A with acked ⊆ A ⊆ acked ∪ maybe: S is a version someone
// wrote, no acknowledged version is greater than S, and S is absent only
// when no write was acknowledged.
package chaos

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tidemark/tidemark/quorum"
)

// Key is one row.
type Key struct{ PK, CK string }

// String returns "pk/ck".
func (k Key) String() string { return k.PK + "/" + k.CK }

// Write is one version of a key that a writer tried to make.
type Write struct {
	Key Key
	// V is the version the store gave the write.
	V quorum.Version
	// Acked reports that the call returned nil: the version must survive
	// unless a greater one supersedes it. A failed call may or may not
	// have been applied.
	Acked bool
	// Writer, Op, Level and Err describe the call, for reports.
	Writer int
	Op     string
	Level  string
	Err    string
}

// Read is one read a writer made and what it returned.
type Read struct {
	Key    Key
	Writer int
	Level  string
	// Found reports a version returned (V); false is ErrNotFound.
	Found bool
	V     quorum.Version
	// Err is set when the read failed (neither a version nor NotFound).
	Err string
}

// History is every call of a run. It is safe for concurrent use.
type History struct {
	mu     sync.Mutex
	writes []Write
	reads  []Read
}

// AddWrite records a write.
func (h *History) AddWrite(w Write) {
	h.mu.Lock()
	h.writes = append(h.writes, w)
	h.mu.Unlock()
}

// AddRead records a read.
func (h *History) AddRead(r Read) {
	h.mu.Lock()
	h.reads = append(h.reads, r)
	h.mu.Unlock()
}

// Writes returns a copy of the writes recorded.
func (h *History) Writes() []Write {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.writes)
}

// Reads returns a copy of the reads recorded.
func (h *History) Reads() []Read {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.reads)
}

// State is a key as one region holds it.
type State struct {
	// Present is false when the region holds no version of the key.
	Present bool
	// V is the version held (Value is ignored for a deletion marker).
	V quorum.Version
}

func (s State) String() string {
	if !s.Present {
		return "absent"
	}
	return s.V.String()
}

// same reports whether two regions hold the same version: timestamp,
// deletion, value and expiry (within a second, as the design allows).
func same(a, b State) bool {
	if a.Present != b.Present {
		return false
	}
	if !a.Present {
		return true
	}
	if a.V.Timestamp != b.V.Timestamp || a.V.Deleted != b.V.Deleted || abs(a.V.Expires-b.V.Expires) > 1 {
		return false
	}
	return a.V.Deleted || bytes.Equal(a.V.Value, b.V.Value)
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// Verdict is what Check found.
type Verdict struct {
	// Keys and Writes count what was checked; Acked and Maybe split the
	// writes; Reads counts the reads checked.
	Keys, Writes, Acked, Maybe, Reads int
	// Diverged: regions that do not hold the same version of a key.
	Diverged []string
	// Lost: an acknowledged version missing although nothing greater
	// superseded it.
	Lost []string
	// Resurrected: a live value held although an acknowledged deletion
	// of the key is greater.
	Resurrected []string
	// Unwritten: a version held (or read) that no write made.
	Unwritten []string
}

// OK reports whether nothing was wrong.
func (v Verdict) OK() bool {
	return len(v.Diverged)+len(v.Lost)+len(v.Resurrected)+len(v.Unwritten) == 0
}

// String summarises the verdict and lists up to 10 problems of each kind.
func (v Verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d keys, %d writes (%d acknowledged, %d may or may not have landed), %d reads: %d diverged, %d lost, %d resurrected, %d unwritten",
		v.Keys, v.Writes, v.Acked, v.Maybe, v.Reads, len(v.Diverged), len(v.Lost), len(v.Resurrected), len(v.Unwritten))
	for _, l := range []struct {
		name string
		list []string
	}{{"diverged", v.Diverged}, {"lost", v.Lost}, {"resurrected", v.Resurrected}, {"unwritten", v.Unwritten}} {
		for i, s := range l.list {
			if i == 10 {
				fmt.Fprintf(&b, "\n  %s: … and %d more", l.name, len(l.list)-10)
				break
			}
			fmt.Fprintf(&b, "\n  %s: %s", l.name, s)
		}
	}
	return b.String()
}

// Check judges the final states of every region (region name → key →
// state; a key a region lacks is absent there) against the history. Every
// key that was written, or that a region holds, is checked.
func Check(h *History, regions map[string]map[Key]State) Verdict {
	writes := h.Writes()
	byKey := map[Key][]Write{}
	var v Verdict
	v.Writes = len(writes)
	for _, w := range writes {
		byKey[w.Key] = append(byKey[w.Key], w)
		if w.Acked {
			v.Acked++
		} else {
			v.Maybe++
		}
	}
	keys := map[Key]bool{}
	for k := range byKey {
		keys[k] = true
	}
	names := make([]string, 0, len(regions))
	for name, states := range regions {
		names = append(names, name)
		for k := range states {
			keys[k] = true
		}
	}
	sort.Strings(names)
	sorted := make([]Key, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].String() < sorted[j].String() })
	v.Keys = len(sorted)
	for _, k := range sorted {
		var first State
		diverged := false
		var desc []string
		for i, name := range names {
			s := regions[name][k]
			desc = append(desc, name+"="+s.String())
			if i == 0 {
				first = s
			} else if !same(first, s) {
				diverged = true
			}
		}
		if diverged {
			v.Diverged = append(v.Diverged, fmt.Sprintf("%s: %s", k, strings.Join(desc, " ")))
			// Each region's state must still be possible on its own.
			for _, name := range names {
				judge(&v, k, regions[name][k], byKey[k], name)
			}
			continue
		}
		judge(&v, k, first, byKey[k], "")
	}
	for _, r := range h.Reads() {
		if r.Err != "" || !r.Found {
			continue
		}
		v.Reads++
		if !written(byKey[r.Key], r.V) {
			v.Unwritten = append(v.Unwritten, fmt.Sprintf("%s: writer %d read %v at %s, which no write made", r.Key, r.Writer, r.V, r.Level))
		}
	}
	return v
}

// judge checks one state of a key against the key's writes.
func judge(v *Verdict, k Key, s State, ws []Write, region string) {
	where := ""
	if region != "" {
		where = " in " + region
	}
	if s.Present && !written(ws, s.V) {
		v.Unwritten = append(v.Unwritten, fmt.Sprintf("%s%s holds %v, which no write made", k, where, s.V))
		return
	}
	for _, w := range ws {
		if !w.Acked {
			continue
		}
		switch {
		case !s.Present:
			v.Lost = append(v.Lost, fmt.Sprintf("%s%s: absent, but writer %d's %s at %s was acknowledged: %v", k, where, w.Writer, w.Op, w.Level, w.V))
		case quorum.Compare(s.V, w.V) < 0 && w.V.Deleted && !s.V.Deleted:
			v.Resurrected = append(v.Resurrected, fmt.Sprintf("%s%s holds %v, but writer %d's acknowledged delete %v is newer", k, where, s.V, w.Writer, w.V))
		case quorum.Compare(s.V, w.V) < 0:
			v.Lost = append(v.Lost, fmt.Sprintf("%s%s holds %v, but writer %d's acknowledged %s at %s is newer: %v", k, where, s.V, w.Writer, w.Op, w.Level, w.V))
		default:
			continue
		}
		return // one problem per key is enough
	}
}

// written reports whether some write made version x: the same timestamp,
// deletion, (for a value) value, and expiry within a second.
func written(ws []Write, x quorum.Version) bool {
	for _, w := range ws {
		if w.V.Timestamp == x.Timestamp && w.V.Deleted == x.Deleted && abs(w.V.Expires-x.Expires) <= 1 &&
			(x.Deleted || bytes.Equal(w.V.Value, x.Value)) {
			return true
		}
	}
	return false
}

// CheckWatermark checks a convergence watermark's promise (docs/design.md,
// "The convergence watermark") against one region's rows, read after the
// watermark was: the region holds every acknowledged write with a version
// below w (µs) — its version of the key is that write's or newer. A key
// with a write at or above the needed version that has expired by now is
// left out: an expired row is absent whatever the region received, so
// absence proves nothing there. It returns a description of each key that
// breaks the promise.
func CheckWatermark(writes []Write, w int64, states map[Key]State, now time.Time) []string {
	need := map[Key]int64{}
	for _, wr := range writes {
		if wr.Acked && wr.V.Timestamp < w && wr.V.Timestamp > need[wr.Key] {
			need[wr.Key] = wr.V.Timestamp
		}
	}
	// Expiry is in seconds; a row expires at the start of its second, and
	// regions apply it within a second either way.
	expired := map[Key]bool{}
	for _, wr := range writes {
		if v, ok := need[wr.Key]; ok && wr.V.Timestamp >= v && wr.V.Expires > 0 && wr.V.Expires <= now.Unix()+1 {
			expired[wr.Key] = true
		}
	}
	var out []string
	for k, v := range need {
		if expired[k] {
			continue
		}
		if s := states[k]; !s.Present || s.V.Timestamp < v {
			out = append(out, fmt.Sprintf("%s: an acknowledged write at version %d is below the watermark %d, the region holds %v", k, v, w, s))
		}
	}
	slices.Sort(out)
	return out
}
