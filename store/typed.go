package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"
)

// Codec turns values of type T into the bytes a Namespace stores and back.
// Implementations must be safe for concurrent use.
type Codec[T any] interface {
	Encode(v T) ([]byte, error)
	Decode(b []byte) (T, error)
}

// JSONCodec stores values as JSON with encoding/json.
type JSONCodec[T any] struct{}

// Encode implements Codec.
func (JSONCodec[T]) Encode(v T) ([]byte, error) { return json.Marshal(v) }

// Decode implements Codec.
func (JSONCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// BytesCodec stores []byte values as they are.
type BytesCodec struct{}

// Encode implements Codec.
func (BytesCodec) Encode(v []byte) ([]byte, error) { return v, nil }

// Decode implements Codec.
func (BytesCodec) Decode(b []byte) ([]byte, error) { return b, nil }

// StringCodec stores string values as their bytes.
type StringCodec struct{}

// Encode implements Codec.
func (StringCodec) Encode(v string) ([]byte, error) { return []byte(v), nil }

// Decode implements Codec.
func (StringCodec) Decode(b []byte) (string, error) { return string(b), nil }

// ErrCodec wraps encoding and decoding failures of a Typed namespace.
var ErrCodec = errors.New("store: codec failed")

// Typed is a Namespace whose values are of type T, encoded by a Codec. Keys
// stay bytes. Every call behaves as the Namespace call of the same name.
type Typed[T any] struct {
	ns    *Namespace
	codec Codec[T]
}

// NewTyped returns a typed view of ns.
func NewTyped[T any](ns *Namespace, codec Codec[T]) *Typed[T] {
	return &Typed[T]{ns: ns, codec: codec}
}

// TypedItem is one live row of a Typed namespace.
type TypedItem[T any] struct {
	// CK is the row's clustering key.
	CK []byte
	// Value is the decoded value.
	Value T
	// Timestamp is the row's version (µs since the Unix epoch).
	Timestamp int64
	// TTL is the time the row has left to live; 0 means no expiry.
	TTL time.Duration
}

// Namespace returns the underlying Namespace.
func (t *Typed[T]) Namespace() *Namespace { return t.ns }

// Put encodes v and writes it as Namespace.Put does. An encoding failure
// wraps ErrCodec and writes nothing.
func (t *Typed[T]) Put(ctx context.Context, pk, ck []byte, v T, opts ...CallOption) error {
	b, err := t.codec.Encode(v)
	if err != nil {
		return fmt.Errorf("%w: encode %s: %w", ErrCodec, t.ns.name, err)
	}
	return t.ns.Put(ctx, pk, ck, b, opts...)
}

// Get reads and decodes a row as Namespace.Get does.
func (t *Typed[T]) Get(ctx context.Context, pk, ck []byte, opts ...CallOption) (TypedItem[T], error) {
	it, err := t.ns.Get(ctx, pk, ck, opts...)
	if err != nil {
		return TypedItem[T]{}, err
	}
	return t.decode(it)
}

// Delete deletes a row as Namespace.Delete does.
func (t *Typed[T]) Delete(ctx context.Context, pk, ck []byte, opts ...CallOption) error {
	return t.ns.Delete(ctx, pk, ck, opts...)
}

// TypedEntry is one row of a Typed PutBatch.
type TypedEntry[T any] struct {
	// CK is the row's clustering key.
	CK []byte
	// Value is the value to encode (ignored for a deletion).
	Value T
	// Delete makes the entry a deletion.
	Delete bool
}

// PutBatch encodes the entries and writes them as Namespace.PutBatch does.
func (t *Typed[T]) PutBatch(ctx context.Context, pk []byte, entries []TypedEntry[T], opts ...CallOption) error {
	es := make([]Entry, len(entries))
	for i, e := range entries {
		es[i] = Entry{CK: e.CK, Delete: e.Delete}
		if e.Delete {
			continue
		}
		b, err := t.codec.Encode(e.Value)
		if err != nil {
			return fmt.Errorf("%w: encode %s entry %d: %w", ErrCodec, t.ns.name, i, err)
		}
		es[i].Value = b
	}
	return t.ns.PutBatch(ctx, pk, es, opts...)
}

// TypedPage is one page of a Typed Scan.
type TypedPage[T any] struct {
	// Items are the decoded rows in clustering-key order.
	Items []TypedItem[T]
	// Next continues the scan; "" at the end.
	Next string
}

// Scan reads and decodes one page as Namespace.Scan does.
func (t *Typed[T]) Scan(ctx context.Context, pk []byte, opts ...CallOption) (TypedPage[T], error) {
	p, err := t.ns.Scan(ctx, pk, opts...)
	if err != nil {
		return TypedPage[T]{}, err
	}
	out := TypedPage[T]{Items: make([]TypedItem[T], 0, len(p.Items)), Next: p.Next}
	for _, it := range p.Items {
		ti, err := t.decode(it)
		if err != nil {
			return TypedPage[T]{}, err
		}
		out.Items = append(out.Items, ti)
	}
	return out, nil
}

// All iterates over every row of a partition as Namespace.All does,
// decoding each; it stops at the first error.
func (t *Typed[T]) All(ctx context.Context, pk []byte, opts ...CallOption) iter.Seq2[TypedItem[T], error] {
	return func(yield func(TypedItem[T], error) bool) {
		for it, err := range t.ns.All(ctx, pk, opts...) {
			if err != nil {
				yield(TypedItem[T]{}, err)
				return
			}
			ti, err := t.decode(it)
			if !yield(ti, err) || err != nil {
				return
			}
		}
	}
}

func (t *Typed[T]) decode(it Item) (TypedItem[T], error) {
	v, err := t.codec.Decode(it.Value)
	if err != nil {
		return TypedItem[T]{}, fmt.Errorf("%w: decode %s row %q: %w", ErrCodec, t.ns.name, it.CK, err)
	}
	return TypedItem[T]{CK: it.CK, Value: v, Timestamp: it.Timestamp, TTL: it.TTL}, nil
}
