package store

import "sync/atomic"

// budget admits units of work against two bounds at once: how many are
// held and how many bytes they hold. It never blocks: take reports false
// when either bound would be passed, and nothing is taken. One unit larger
// than the byte bound is still admitted when nothing else is held, so that
// a big value is not refused just for its size. The background queue and
// the hint pool each have one.
type budget struct {
	maxCount int64
	maxBytes int64
	count    atomic.Int64
	bytes    atomic.Int64
}

func newBudget(maxCount int, maxBytes int64) *budget {
	return &budget{maxCount: int64(maxCount), maxBytes: maxBytes}
}

// take admits one unit of n bytes, or reports false.
func (b *budget) take(n int64) bool {
	if b.count.Add(1) > b.maxCount {
		b.count.Add(-1)
		return false
	}
	if nb := b.bytes.Add(n); nb > b.maxBytes && nb != n {
		b.count.Add(-1)
		b.bytes.Add(-n)
		return false
	}
	return true
}

// release gives back one unit of n bytes taken earlier.
func (b *budget) release(n int64) {
	b.count.Add(-1)
	b.bytes.Add(-n)
}

// held returns the units and bytes held now.
func (b *budget) held() (count, bytes int64) { return b.count.Load(), b.bytes.Load() }
