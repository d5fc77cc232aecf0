package watermark

import (
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
