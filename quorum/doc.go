// Package quorum holds Tidemark's consistency arithmetic: the consistency
// levels across regions, the plan of which regions a call waits on and how
// their answers combine into success or failure, and the last-write-wins
// order of row versions.
//
// It is pure logic: no I/O, no clocks, no goroutines, no mutable state. Every
// type is a small value that is safe to copy and to share between goroutines.
// The store (reads and writes) and repair both decide with this package, so
// that the rules live in one place and are tested exhaustively.
//
// # Levels
//
// A deployment has R ≥ 1 regions, numbered 0..R-1; region 0 is always the
// home region of the process.
//
//	level         succeeds when                       waits on    inside a region
//	LOCAL_ONE     home acks                           home        LOCAL_ONE
//	LOCAL_QUORUM  home acks                           home        LOCAL_QUORUM
//	QUORUM        R/2+1 regions ack                   all         LOCAL_QUORUM
//	EACH_QUORUM   every region acks                   all         LOCAL_QUORUM
//	ALL           every region acks                   all         ALL
//	ANY           home acks, or its hint is durable   home        LOCAL_ONE
//
// A write also reaches the regions it does not wait on, in the background
// ([Plan.Async]); a read does not. ANY is for writes only.
//
// # Invariants
//
// These hold for every valid [Plan] and are checked by the tests over every
// level, every R from 1 to 6 and every combination of outcomes:
//
//   - [Plan.Result] is exact: it is [Succeeded] if and only if every way the
//     Pending regions could still answer leads to success, [Lost] if and only
//     if none does, and [ResultPending] otherwise.
//   - Hence a decided result is final: once Succeeded or Lost, no answer from
//     a region still Pending changes it.
//   - Result is monotonic: turning any outcome into Acked never turns a
//     success into anything else nor a pending call into a lost one; turning
//     any outcome into Failed never turns a loss into anything else nor a
//     pending call into a success.
//   - Only the regions in [Plan.Sync] matter: the outcome of a region the
//     call does not wait on never changes the result.
//   - Reads and writes at the same level decide alike.
//   - The home region is always in [Plan.Sync]. For a write, Sync and
//     [Plan.Async] are disjoint and together cover every region; a read has no
//     Async regions. 1 ≤ [Plan.Required] ≤ len(Sync).
//   - [ParseLevel] accepts what [Level.String] returns: ParseLevel(l.String())
//     is l for every valid level, and likewise for MarshalText/UnmarshalText.
//
// # Versions
//
// [Compare] orders two versions of one row exactly as docs/design.md states
// Cassandra's cell reconciliation: the higher timestamp wins; on a tie a
// deletion marker wins; then the greater value, compared as unsigned bytes.
// It is a total order (antisymmetric and transitive; 0 only for the same
// version), so every region and every repair run picks the same winner, and
// [Newest] picks the first winner in a slice.
package quorum
