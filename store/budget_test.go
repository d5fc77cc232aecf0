package store

import "testing"

func TestBudget(t *testing.T) {
	b := newBudget(2, 10)
	if !b.take(4) || !b.take(6) {
		t.Fatal("two units within both bounds refused")
	}
	if b.take(0) {
		t.Fatal("a third unit admitted past the count bound")
	}
	b.release(6)
	if b.take(7) {
		t.Fatal("a unit admitted past the byte bound")
	}
	if c, n := b.held(); c != 1 || n != 4 {
		t.Fatalf("held %d units, %d bytes after a refusal; want 1, 4 (a refusal takes nothing)", c, n)
	}
	b.release(4)
	if !b.take(100) {
		t.Fatal("a unit larger than the byte bound refused with nothing held")
	}
	if b.take(1) {
		t.Fatal("admitted more bytes while an oversized unit is held")
	}
}
