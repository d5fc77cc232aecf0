package watermark

import (
	"slices"
	"testing"
	"time"
)

func TestCompute(t *testing.T) {
	now := time.UnixMicro(10_000)
	p := func(id string, reg int64, closed bool) Producer {
		return Producer{ID: id, Registered: reg, Closed: closed}
	}
	m := func(id string, part, parts int, before int64, closing bool) Mark {
		return Mark{Producer: id, Partition: part, Partitions: parts, Before: before, Closing: closing}
	}
	for _, tc := range []struct {
		name      string
		producers []Producer
		marks     []Mark
		debt      int64
		want      int64
		limit     string
		live      int
	}{
		{"no producer: the computation's time", nil, nil, 0, 10_000, "", 0},
		{"registered, no marks: its registration", []Producer{p("a", 100, false)}, nil, 0, 100, "a", 1},
		{"marks on every partition: the least", []Producer{p("a", 100, false)},
			[]Mark{m("a", 0, 2, 500, false), m("a", 1, 2, 400, false)}, 0, 400, "a", 1},
		{"a partition without a mark holds it at the registration", []Producer{p("a", 100, false)},
			[]Mark{m("a", 0, 2, 500, false)}, 0, 100, "a", 1},
		{"the newest mark of a partition counts", []Producer{p("a", 100, false)},
			[]Mark{m("a", 0, 1, 300, false), m("a", 0, 1, 700, false)}, 0, 700, "a", 1},
		{"least over producers", []Producer{p("a", 100, false), p("b", 200, false)},
			[]Mark{m("a", 0, 1, 900, false), m("b", 0, 1, 600, false)}, 0, 600, "b", 2},
		{"marks of an unregistered (expired) producer are ignored", []Producer{p("a", 100, false)},
			[]Mark{m("a", 0, 1, 900, false), m("gone", 0, 1, 50, false)}, 0, 900, "a", 1},
		{"a closed producer whose closing heartbeat is everywhere is retired", []Producer{p("a", 100, false), p("c", 100, true)},
			[]Mark{m("a", 0, 1, 900, false), m("c", 0, 1, 300, true)}, 0, 900, "a", 1},
		{"a closed producer still holds it until its last heartbeat is everywhere", []Producer{p("a", 100, false), p("c", 100, true)},
			[]Mark{m("a", 0, 2, 900, false), m("a", 1, 2, 900, false), m("c", 0, 2, 300, true), m("c", 1, 2, 250, false)}, 0, 250, "c", 2},
		{"debt holds it", []Producer{p("a", 100, false)}, []Mark{m("a", 0, 1, 900, false)}, 700, 700, "debt", 1},
		{"debt newer than the producers changes nothing", []Producer{p("a", 100, false)}, []Mark{m("a", 0, 1, 900, false)}, 950, 900, "a", 1},
		{"debt with no producer", nil, nil, 5_000, 5_000, "debt", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Compute(tc.producers, tc.marks, tc.debt, now)
			if got.Before != tc.want || got.Limit != tc.limit || got.Live != tc.live {
				t.Fatalf("Compute = %+v, want before %d limit %q live %d", got, tc.want, tc.limit, tc.live)
			}
		})
	}
}

func TestExits(t *testing.T) {
	now := time.Unix(1000, 0)
	ttl, skew := time.Minute, time.Second
	s := func(id string, refreshedAgo time.Duration, closed, exited bool) Session {
		return Session{ID: id, RegistrationTTL: ttl, Refreshed: now.Add(-refreshedAgo), Closed: closed, Exited: exited}
	}
	sessions := []Session{
		s("z-gone", 2*time.Minute, false, false),
		s("live", 2*time.Minute, false, false),   // its registration is current
		s("closed", 2*time.Minute, true, false),  // closed cleanly: held until retired
		s("handled", 2*time.Minute, false, true), // already recorded
		s("fresh", 30*time.Second, false, false), // registration missing from one read
		s("at-bound", ttl+skew, false, false),    // not yet past the bound
		s("a-gone", ttl+skew+time.Millisecond, false, false),
	}
	exits, waiting := Exits(sessions, map[string]bool{"live": true}, now, skew)
	ids := func(ss []Session) []string {
		var out []string
		for _, e := range ss {
			out = append(out, e.ID)
		}
		return out
	}
	if want := []string{"a-gone", "z-gone"}; !slices.Equal(ids(exits), want) {
		t.Fatalf("exits = %v, want %v", ids(exits), want)
	}
	if want := []string{"at-bound", "closed", "fresh"}; !slices.Equal(ids(waiting), want) {
		t.Fatalf("waiting = %v, want %v", ids(waiting), want)
	}
	if e, w := Exits(nil, nil, now, skew); len(e)+len(w) != 0 {
		t.Fatalf("Exits(nil) = %v, %v", e, w)
	}
}

// A store whose registration has expired but whose exit is not yet
// recorded still holds the watermark at its registration: between the
// two, no computation may leave it out.
func TestWaitingSessionHoldsTheWatermark(t *testing.T) {
	now := time.Unix(1000, 0)
	s := Session{ID: "gone", Registered: 500, RegistrationTTL: time.Minute, Refreshed: now.Add(-time.Minute)}
	_, waiting := Exits([]Session{s}, nil, now, time.Second)
	if len(waiting) != 1 {
		t.Fatalf("waiting = %v", waiting)
	}
	res := Compute([]Producer{waiting[0].Waiting()}, []Mark{{Producer: "gone", Partitions: 1, Before: 900}}, 0, now)
	if res.Before != 900 || res.Limit != "gone" {
		t.Fatalf("Compute = %+v, want held at the store's mark 900", res)
	}
}

// A store that closed cleanly may leave hints a region has not applied
// (settled means durable in a hint topic, not applied): once its
// registration is gone, its closed session still holds the region's
// watermark until its closing heartbeat was applied in every partition.
// (Closed sessions were skipped: with the region's replayer more than a
// closed registration's 10 minutes behind, the watermark jumped past the
// store's unapplied hints.)
func TestClosedSessionHoldsUntilItsClosingHeartbeatIsApplied(t *testing.T) {
	now := time.Unix(10_000, 0)
	w := now.Add(-15 * time.Minute).UnixMicro() // a write the region lacks: its hint is not applied
	s := Session{ID: "s1", Registered: w - 1, Home: "a", Closed: true, RegistrationTTL: time.Minute,
		Refreshed: now.Add(-14 * time.Minute)}
	exits, waiting := Exits([]Session{s}, map[string]bool{}, now, 500*time.Millisecond)
	if len(exits) != 0 || len(waiting) != 1 || !waiting[0].Waiting().Closed {
		t.Fatalf("Exits = %v, %v; want the closed session waiting, as a closed producer", exits, waiting)
	}
	producers := []Producer{waiting[0].Waiting()}
	closing := func(parts ...int) []Mark {
		var ms []Mark
		for _, p := range parts {
			ms = append(ms, Mark{Producer: "s1", Partition: p, Partitions: 3, Before: now.Add(-14 * time.Minute).UnixMicro(), Closing: true})
		}
		return ms
	}
	if res := Compute(producers, nil, 0, now); res.Before > w || res.Limit != "s1" {
		t.Fatalf("no mark applied: watermark %+v passes the write %d the region lacks", res, w)
	}
	// Its closing heartbeat applied in two partitions of three: the third
	// may still hold a hint before it.
	if res := Compute(producers, closing(0, 2), 0, now); res.Before > w || res.Limit != "s1" {
		t.Fatalf("closing marks in 2 of 3 partitions: watermark %+v passes the write %d", res, w)
	}
	if res := Compute(producers, closing(0, 1, 2), 0, now); res.Before != now.UnixMicro() || res.Retired != 1 || res.Live != 0 {
		t.Fatalf("closing marks in every partition: %+v, want the store retired and the watermark at now", res)
	}
}
