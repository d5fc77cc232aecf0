package quorum_test

import (
	"errors"
	"fmt"

	"github.com/tidemark/tidemark/quorum"
)

func ExampleParseLevel() {
	for _, s := range []string{"local-quorum", "EachQuorum", "any", "serial"} {
		l, err := quorum.ParseLevel(s)
		if errors.Is(err, quorum.ErrUnknownLevel) {
			fmt.Printf("%q: unknown\n", s)
			continue
		}
		fmt.Printf("%q: %s, %s inside each region, readable: %v\n", s, l, l.RegionConsistency(), l.ValidForRead())
	}
	// Output:
	// "local-quorum": LOCAL_QUORUM, LOCAL_QUORUM inside each region, readable: true
	// "EachQuorum": EACH_QUORUM, LOCAL_QUORUM inside each region, readable: true
	// "any": ANY, LOCAL_ONE inside each region, readable: false
	// "serial": unknown
}

// A QUORUM write to three regions: the call returns as soon as two regions
// have acked, without waiting for the third.
func ExamplePlan_Result() {
	p, err := quorum.WritePlan(quorum.Quorum, 3)
	if err != nil {
		panic(err)
	}
	outcomes := make([]quorum.Outcome, 3) // all Pending
	for _, answer := range []struct {
		region  int
		outcome quorum.Outcome
	}{{1, quorum.Failed}, {0, quorum.Acked}, {2, quorum.Acked}} {
		outcomes[answer.region] = answer.outcome
		fmt.Println(p.Describe(outcomes))
		if p.Result(outcomes) != quorum.ResultPending {
			break
		}
	}
	// Output:
	// QUORUM R=3 need 2: [a:PENDING b:FAILED c:PENDING] -> PENDING
	// QUORUM R=3 need 2: [a:ACKED b:FAILED c:PENDING] -> PENDING
	// QUORUM R=3 need 2: [a:ACKED b:FAILED c:ACKED] -> SUCCEEDED
}

// A LOCAL_QUORUM write waits on the home region only and writes the others in
// the background; an ANY write succeeds on a durable hint for home.
func ExampleWritePlan() {
	p, _ := quorum.WritePlan(quorum.LocalQuorum, 3)
	fmt.Println(p, "sync", p.Sync(), "async", p.Async())
	fmt.Println(p.Describe([]quorum.Outcome{quorum.Acked, quorum.Pending, quorum.Failed}))

	a, _ := quorum.WritePlan(quorum.Any, 2)
	fmt.Println(a.Describe([]quorum.Outcome{quorum.Hinted, quorum.Pending}))

	_, err := quorum.ReadPlan(quorum.Any, 2)
	fmt.Println(errors.Is(err, quorum.ErrWriteOnly))
	// Output:
	// LOCAL_QUORUM R=3 need 1 sync [0] async [1 2]
	// LOCAL_QUORUM R=3 need 1: [a:ACKED (b:PENDING) (c:FAILED)] -> SUCCEEDED
	// ANY R=2 need 1: [a:HINTED (b:PENDING)] -> SUCCEEDED
	// true
}

func ExampleCompare() {
	put := quorum.Version{Timestamp: 100, Value: []byte("v1")}
	later := quorum.Version{Timestamp: 101, Value: []byte("v0")}
	deleted := quorum.Version{Timestamp: 100, Deleted: true}
	greater := quorum.Version{Timestamp: 100, Value: []byte("v2")}

	fmt.Println(quorum.Compare(later, put) > 0)   // higher timestamp wins
	fmt.Println(quorum.Compare(deleted, put) > 0) // on a tie, a deletion wins
	fmt.Println(quorum.Compare(greater, put) > 0) // then the greater value
	fmt.Println(quorum.Compare(put, put) == 0)
	// Output:
	// true
	// true
	// true
	// true
}

func ExampleNewest() {
	versions := []quorum.Version{ // one row as three regions hold it
		{Timestamp: 100, Value: []byte("v1")},
		{Timestamp: 105, Deleted: true},
		{Timestamp: 103, Value: []byte("v2")},
	}
	i := quorum.Newest(versions)
	fmt.Println(i, versions[i])
	// Output:
	// 1 ts=105 deleted
}
