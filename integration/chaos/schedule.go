package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/tidemark/tidemark/quorum"
)

// FaultKind is one kind of fault the suite injects.
type FaultKind string

// The faults. Regions are cut and slowed through the fault proxies between
// the writers and the region; nodes and the broker are paused (SIGSTOP),
// killed and restarted; repaird is killed (SIGKILL) while it replays hints
// and while a repair run is under way, and started again.
const (
	Cut          FaultKind = "cut"           // the region refuses the writers' connections
	Slow         FaultKind = "slow"          // every byte to the region waits Latency
	PauseNode    FaultKind = "pause-node"    // the region's node is SIGSTOPped, then SIGCONTed
	KillNode     FaultKind = "kill-node"     // the region's node is SIGKILLed, then restarted
	PauseKafka   FaultKind = "pause-kafka"   // the broker is SIGSTOPped, then SIGCONTed
	RestartKafka FaultKind = "restart-kafka" // the broker is SIGKILLed, then restarted
	KillReplayer FaultKind = "kill-replayer" // repaird serve (hint replay) is SIGKILLed, then started again
	KillRepair   FaultKind = "kill-repair"   // a repair run is started and SIGKILLed part-way
)

// Fault is one fault of a schedule.
type Fault struct {
	Kind FaultKind
	// Region is the region it applies to (cut, slow, nodes); "" otherwise.
	Region string
	// At is when it begins, from the start of the workload; For how long
	// it lasts (for a kill: how long until the restart).
	At, For time.Duration
	// Latency is the delay of a Slow fault.
	Latency time.Duration
}

func (f Fault) String() string {
	s := fmt.Sprintf("%6.1fs %-13s", f.At.Seconds(), f.Kind)
	if f.Region != "" {
		s += " region " + f.Region
	}
	s += fmt.Sprintf(" for %.1fs", f.For.Seconds())
	if f.Latency > 0 {
		s += fmt.Sprintf(" (+%v)", f.Latency)
	}
	return s
}

// Schedule draws a fault schedule for a workload of duration d over
// regions (the first is the writers' home), from seed. Every kind of fault
// happens at least once when d allows; faults may overlap, but a node is
// never paused or killed twice at once, and every fault ends before d.
func Schedule(seed uint64, d time.Duration, regions []string) []Fault {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	span := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
	remote := regions[1:]
	var out []Fault
	add := func(f Fault) {
		if f.At+f.For < d {
			out = append(out, f)
		}
	}
	// One of each kind, spread over the run, then more cuts, slow links and
	// pauses in proportion to its length.
	kinds := []FaultKind{Cut, Slow, PauseNode, KillNode, PauseKafka, RestartKafka, KillReplayer, KillRepair}
	r.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	slot := d / time.Duration(len(kinds)+1)
	for i, k := range kinds {
		at := time.Duration(i)*slot + span(0, slot/2)
		add(draw(r, k, at, regions, remote, span))
	}
	for extra := int(d / (20 * time.Second)); extra > 0; extra-- {
		k := []FaultKind{Cut, Cut, Slow, PauseNode, PauseKafka, KillReplayer}[r.IntN(6)]
		add(draw(r, k, span(0, d), regions, remote, span))
	}

	sort.Slice(out, func(i, j int) bool { return out[i].At < out[j].At })
	// A node or the broker paused or killed while it is already paused or
	// down is dropped, as is a repaird kill while repaird is down: the
	// schedule stays what the run can do.
	busy := map[string]time.Duration{}
	kept := out[:0]
	for _, f := range out {
		var what string
		switch f.Kind {
		case PauseNode, KillNode:
			what = "node " + f.Region
		case PauseKafka, RestartKafka:
			what = "kafka"
		case KillReplayer:
			what = "repaird"
		default:
			kept = append(kept, f)
			continue
		}
		if busy[what] > f.At {
			continue
		}
		busy[what] = f.At + f.For + 30*time.Second // a restart takes a while
		kept = append(kept, f)
	}
	// The tail: a remote region cut while Kafka is paused, so that the last
	// versions of many keys miss that region and cannot be hinted — the
	// repair at the end has real work (without it, writes made after every
	// fault healed supersede most of the damage). Earlier broker faults that
	// would still be under way are dropped for it.
	if d >= 20*time.Second {
		cut := Fault{Kind: Cut, Region: remote[r.IntN(len(remote))], At: d * 3 / 4, For: d / 5}
		pause := Fault{Kind: PauseKafka, At: cut.At + time.Second, For: cut.For - 2*time.Second}
		final := kept[:0]
		for _, f := range kept {
			if (f.Kind == PauseKafka || f.Kind == RestartKafka) && f.At+f.For+30*time.Second > pause.At {
				continue
			}
			final = append(final, f)
		}
		kept = append(final, cut, pause)
		sort.Slice(kept, func(i, j int) bool { return kept[i].At < kept[j].At })
	}
	return kept
}

func draw(r *rand.Rand, k FaultKind, at time.Duration, regions, remote []string, span func(lo, hi time.Duration) time.Duration) Fault {
	f := Fault{Kind: k, At: at}
	switch k {
	case Cut:
		f.Region = regions[r.IntN(len(regions))] // the home region too
		f.For = span(2*time.Second, 8*time.Second)
	case Slow:
		f.Region = regions[r.IntN(len(regions))]
		f.For = span(2*time.Second, 8*time.Second)
		f.Latency = span(50*time.Millisecond, 600*time.Millisecond)
	case PauseNode:
		f.Region = remote[r.IntN(len(remote))]
		f.For = span(2*time.Second, 10*time.Second)
	case KillNode:
		f.Region = remote[r.IntN(len(remote))]
		f.For = span(time.Second, 5*time.Second)
	case PauseKafka:
		f.For = span(3*time.Second, 12*time.Second)
	case RestartKafka:
		f.For = span(time.Second, 4*time.Second)
	case KillReplayer:
		f.For = span(500*time.Millisecond, 3*time.Second)
	case KillRepair:
		f.For = span(300*time.Millisecond, 4*time.Second) // how long it runs before the kill
	}
	return f
}

// OpKind is a kind of call in the workload.
type OpKind string

// The calls.
const (
	OpPut    OpKind = "put"
	OpPutTTL OpKind = "put-ttl"
	OpDelete OpKind = "delete"
	OpBatch  OpKind = "batch"
	OpGet    OpKind = "get"
)

// Op is one call a writer makes.
type Op struct {
	Kind  OpKind
	Level quorum.Level
	// Key is the row (for a batch: the first row; Entries has them all).
	Key Key
	// Entries are a batch's rows: clustering keys and whether each is a
	// deletion.
	Entries []BatchEntry
	// TTL of a put-ttl.
	TTL time.Duration
}

// BatchEntry is one row of a batch Op.
type BatchEntry struct {
	CK     string
	Delete bool
}

// Workload draws one writer's calls over a small key space, so that the
// writers overwrite, delete and re-create each other's rows.
type Workload struct {
	r           *rand.Rand
	Partitions  int
	Clusterings int
}

// NewWorkload returns writer's workload for seed.
func NewWorkload(seed uint64, writer int) *Workload {
	return &Workload{r: rand.New(rand.NewPCG(seed, uint64(writer)+1)), Partitions: 20, Clusterings: 10}
}

var writeLevels = []quorum.Level{quorum.LocalOne, quorum.LocalQuorum, quorum.LocalQuorum, quorum.LocalQuorum,
	quorum.Quorum, quorum.Quorum, quorum.EachQuorum, quorum.All, quorum.Any, quorum.Any}
var readLevels = []quorum.Level{quorum.LocalOne, quorum.LocalQuorum, quorum.Quorum, quorum.EachQuorum, quorum.All}

// Next draws the next call.
func (w *Workload) Next() Op {
	r := w.r
	pk := fmt.Sprintf("p%d", r.IntN(w.Partitions))
	ck := func() string { return fmt.Sprintf("c%d", r.IntN(w.Clusterings)) }
	op := Op{Key: Key{PK: pk, CK: ck()}, Level: writeLevels[r.IntN(len(writeLevels))]}
	switch n := r.IntN(100); {
	case n < 40:
		op.Kind = OpPut
	case n < 50:
		op.Kind = OpPutTTL
		// Long enough never to expire during a run: a TTL'd write that
		// supersedes an older value must reach every region before it
		// expires (docs/design.md, "Expiry").
		op.TTL = time.Duration(2+r.IntN(10)) * time.Hour
	case n < 68:
		op.Kind = OpDelete
	case n < 83:
		op.Kind = OpBatch
		seen := map[string]bool{}
		for range 2 + r.IntN(3) {
			c := ck()
			if seen[c] {
				continue
			}
			seen[c] = true
			op.Entries = append(op.Entries, BatchEntry{CK: c, Delete: r.IntN(4) == 0})
		}
		op.Key.CK = op.Entries[0].CK
	default:
		op.Kind = OpGet
		op.Level = readLevels[r.IntN(len(readLevels))]
	}
	return op
}

// Skew draws the clock offset of the second writer, within MaxClockDrift
// (default one minute) but large enough to reorder concurrent writes.
func Skew(seed uint64) time.Duration {
	r := rand.New(rand.NewPCG(seed, 0xc10c))
	return time.Duration(r.Int64N(int64(4*time.Second))) - 2*time.Second
}
