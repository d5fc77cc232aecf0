package store_test

import (
	"context"
	"fmt"
	"testing"
)

// The Store's own cost per call, against in-memory regions (no network):
// what the layer adds on top of the driver.
//
//	go test ./store -run '^$' -bench . -benchmem
func BenchmarkLayer(b *testing.B) {
	st, _ := openMemory(nil)
	defer st.Close()
	ctx := context.Background()
	ns, err := st.CreateNamespace(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 100)
	keys := make([][2][]byte, 1000)
	for i := range keys {
		keys[i] = [2][]byte{fmt.Appendf(nil, "p%d", i), fmt.Appendf(nil, "c%d", i)}
		if err := ns.Put(ctx, keys[i][0], keys[i][1], value); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("get_local_quorum", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			k := keys[i%len(keys)]
			if _, err := ns.Get(ctx, k[0], k[1]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("put_local_quorum", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			k := keys[i%len(keys)]
			if err := ns.Put(ctx, k[0], k[1], value); err != nil {
				b.Fatal(err)
			}
		}
	})
}
