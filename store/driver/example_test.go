package driver_test

import (
	"context"
	"fmt"
	"log"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store"
	"github.com/tidemark/tidemark/store/driver"
)

// A Store over in-memory regions, one of which fails: region "eu" takes one
// more write and then is down for writes (reads would still work). The
// Store hints the write eu missed; the region shows what it was asked and
// what it applied.
func ExampleMemoryFactory() {
	ctx := context.Background()
	regions := map[string]*driver.MemoryRegion{"us": driver.NewMemoryRegion(), "eu": driver.NewMemoryRegion()}
	var hinted []string
	st, err := store.Open(ctx, store.Config{
		Regions:     []store.RegionConfig{{Name: "us", ContactPoints: []string{"memory"}}, {Name: "eu", ContactPoints: []string{"memory"}}},
		Home:        "us",
		Keyspace:    "app",
		NewExecutor: driver.MemoryFactory(regions),
		HintSink: store.HintSinkFunc(func(_ context.Context, h record.Hint) error {
			hinted = append(hinted, h.Target+":"+string(h.CK))
			return nil
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	carts, err := st.CreateNamespace(ctx, "carts")
	if err != nil {
		log.Fatal(err)
	}

	regions["eu"].SetFault(driver.Fault{Err: driver.Outage().Err, After: 1, Ops: []string{driver.OpWrite}})
	for _, item := range []string{"item-1", "item-2"} {
		err := carts.Put(ctx, []byte("user-42"), []byte(item), []byte("1"), store.WithConsistency(quorum.All))
		fmt.Println(item, "acked everywhere:", err == nil)
	}
	st.Close()

	eu := regions["eu"]
	_, has := eu.Lookup("app", "carts", []byte("user-42"), []byte("item-2"))
	fmt.Println("hinted:", hinted, "eu has item-2:", has)
	fmt.Println("eu writes received:", eu.Calls(driver.OpWrite), "applied:", eu.Writes())
	// Output:
	// item-1 acked everywhere: true
	// item-2 acked everywhere: false
	// hinted: [eu:item-2] eu has item-2: false
	// eu writes received: 2 applied: 1
}
