package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tidemark/tidemark/repair"
)

// WriteSummary prints a run's report as a table.
func WriteSummary(w io.Writer, rep *repair.Report) {
	mode := "repair"
	if rep.DryRun {
		mode = "dry run (nothing written)"
	}
	state := "complete"
	if !rep.Complete {
		state = "INCOMPLETE"
	}
	run := "run " + rep.RunID
	if rep.Resumed {
		run = fmt.Sprintf("resumed run %s (started %s)", rep.RunID, rep.RunStarted.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "\n%s of namespace %q: %s, %s, segments %d/%d done (%d resumed, %d failed), %s\n",
		mode, rep.Namespace, state, run, rep.SegmentsDone, rep.Segments, rep.SegmentsResumed, rep.SegmentsFailed,
		rep.Duration.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "region\trows scanned\trows differing\trows written\tvalue fetches\tbytes read\t")
	for _, r := range rep.Regions {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", r.Region, r.RowsScanned, r.RowsDiffering, r.RowsWritten, r.ValueFetches, r.BytesRead)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "rows: %d scanned, %d differing, %d written, %d skipped (expired or changed meanwhile), %d timestamp ties\n",
		rep.RowsScanned, rep.RowsDiffering, rep.RowsWritten, rep.RowsSkipped, rep.Ties)
	var fpq int64
	for _, r := range rep.Regions {
		fpq += r.FingerprintQueries
	}
	if fpq > 0 {
		fmt.Fprintf(w, "fingerprints: %d rows in sync without a scan, %d segments in sync, %d aggregate queries, %d ranges digest-scanned\n",
			rep.RowsInSync, rep.SegmentsInSync, fpq, rep.RangesScanned)
	}
	if rep.FingerprintsBackfilled > 0 {
		fmt.Fprintf(w, "fingerprints backfilled: %d rows written before the fp column (their ranges are in sync by fingerprints from the next run on)\n", rep.FingerprintsBackfilled)
	}
	if rep.Conflicts > 0 {
		fmt.Fprintf(w, "conflicts: %d (versions LWW dropped that another writer made within the conflict window; list them with `repaird conflicts`)\n", rep.Conflicts)
	}
	if len(rep.Pairs) > 0 {
		fmt.Fprintln(w, "rows differing per region pair:")
		for _, p := range rep.Pairs {
			fmt.Fprintf(w, "  %s <> %s: %d\n", p.A, p.B, p.Rows)
		}
	}
	if len(rep.Samples) > 0 {
		fmt.Fprintln(w, "sample differing rows:")
		for _, s := range rep.Samples {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "failed: %s\n", OneLine(e))
	}
	for _, warning := range rep.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warning)
	}
}
