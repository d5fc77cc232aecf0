package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Repair debt (docs/repair.md, "Repair debt"): the keys a region missed
// and that no hint will bring it — the hint could not be stored, or its
// fate is unknown — recorded by the store in its home region's keyspace, in
// a table of the namespaces' own shape, so that repaird can repair exactly
// those keys instead of waiting for the next full run.
//
// A debt entry is one row of DebtTable:
//
//	pk    DebtPartition(target, shard): the region that lacks the key, and
//	      one of DebtShards shards (so that no partition grows unbounded)
//	ck    EncodeDebtKey(namespace, pk, ck): the key it lacks
//	value EncodeDebtValue: why, and when
//
// written with the lost write's own timestamp, so that the entry of a key
// lost twice is the later one, and removed by repaird with DELETE … USING
// TIMESTAMP of the entry it repaired, which leaves a newer entry in place.
// An overflow entry (ck EncodeDebtOverflow(namespace)) says that some debt
// of the namespace could not be recorded: only a full run covers it.

// DebtTable is the table of repair debt in each region's keyspace.
const DebtTable = "tidemark_debt"

// DebtRetention is the retention DebtTable is created with: how long its
// tombstones (removed entries) are kept. A removed entry that comes back
// after a tombstone was purged is only repaired again, harmlessly.
const DebtRetention = time.Hour

// DebtShards is how many partitions each target region's debt is spread
// over.
const DebtShards = 16

// ErrBadDebt reports a debt row that this version cannot decode.
var ErrBadDebt = errors.New("schema: malformed repair debt entry")

// debtOverflowTag starts the clustering key of an overflow entry; a key
// entry starts with its namespace's length (1 to 48), never 0.
const debtOverflowTag = 0

// DebtPartition is the partition key of target's debt shard.
func DebtPartition(target string, shard int) []byte {
	b := make([]byte, 0, len(target)+2)
	b = append(b, target...)
	return append(b, 0, byte(shard))
}

// ParseDebtPartition returns the target region and shard of a debt
// partition key.
func ParseDebtPartition(pk []byte) (target string, shard int, err error) {
	if len(pk) < 3 || pk[len(pk)-2] != 0 {
		return "", 0, fmt.Errorf("%w: partition key %x", ErrBadDebt, pk)
	}
	return string(pk[:len(pk)-2]), int(pk[len(pk)-1]), nil
}

// DebtShard is the shard a key's debt goes to.
func DebtShard(namespace string, pk, ck []byte) int {
	d := xxhash.New()
	_, _ = d.WriteString(namespace)
	_, _ = d.Write([]byte{0})
	_, _ = d.Write(pk)
	_, _ = d.Write([]byte{0})
	_, _ = d.Write(ck)
	return int(d.Sum64() % DebtShards)
}

// EncodeDebtKey is the clustering key of the debt entry for (namespace,
// pk, ck): the namespace's length and name, the partition key's length
// (4 bytes) and bytes, then the clustering key.
func EncodeDebtKey(namespace string, pk, ck []byte) []byte {
	b := make([]byte, 0, 1+len(namespace)+4+len(pk)+len(ck))
	b = append(b, byte(len(namespace)))
	b = append(b, namespace...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(pk)))
	b = append(b, pk...)
	return append(b, ck...)
}

// EncodeDebtOverflow is the clustering key of namespace's overflow entry.
func EncodeDebtOverflow(namespace string) []byte {
	return append([]byte{debtOverflowTag}, namespace...)
}

// DecodeDebtKey reads a debt clustering key: the namespace and, unless
// overflow, the key it names.
func DecodeDebtKey(b []byte) (namespace string, pk, ck []byte, overflow bool, err error) {
	if len(b) == 0 {
		return "", nil, nil, false, fmt.Errorf("%w: empty clustering key", ErrBadDebt)
	}
	if b[0] == debtOverflowTag {
		return string(b[1:]), nil, nil, true, nil
	}
	n := int(b[0])
	if len(b) < 1+n+4 {
		return "", nil, nil, false, fmt.Errorf("%w: clustering key %x is too short", ErrBadDebt, b)
	}
	namespace = string(b[1 : 1+n])
	rest := b[1+n:]
	m := int(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if len(rest) < m {
		return "", nil, nil, false, fmt.Errorf("%w: clustering key %x: partition key of %d bytes, %d left", ErrBadDebt, b, m, len(rest))
	}
	return namespace, rest[:m:m], rest[m:], false, nil
}

// EncodeDebtValue is the value of a debt entry: format 1, why the write was
// not hinted, and when that was (µs since the epoch).
func EncodeDebtValue(reason string, at time.Time) []byte {
	b := []byte{1}
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixMicro()))
	return append(b, reason...)
}

// DecodeDebtValue reads a debt entry's value.
func DecodeDebtValue(b []byte) (reason string, at time.Time, err error) {
	if len(b) < 9 || b[0] != 1 {
		return "", time.Time{}, fmt.Errorf("%w: value %x", ErrBadDebt, b)
	}
	return string(b[9:]), time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:9]))), nil
}

// SelectDebt reads one debt partition: clustering key, value and the
// entry's timestamp. Bind the partition key.
func SelectDebt(keyspace string) string {
	return fmt.Sprintf(`SELECT ck, value, writetime(value) FROM %s.%s WHERE pk = ?`, keyspace, DebtTable)
}

// DeleteDebt removes one debt entry up to its timestamp, so that an entry
// written again since (a later loss of the same key) stays. Bind the
// timestamp, the partition key and the clustering key.
func DeleteDebt(keyspace string) string {
	return fmt.Sprintf(`DELETE FROM %s.%s USING TIMESTAMP ? WHERE pk = ? AND ck = ?`, keyspace, DebtTable)
}
