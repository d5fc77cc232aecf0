package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/internal/conflicts"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/repair"
)

// conflictLister is a region whose keyspace holds a conflict log
// (repair.CQLRegion).
type conflictLister interface {
	ListConflicts(ctx context.Context, namespace string, q repair.ConflictQuery) ([]repair.Conflict, error)
}

func newConflictsCommand(env *Env) *cobra.Command {
	var path, namespace string
	var since time.Duration
	var limit int
	cmd := &cobra.Command{
		Use:   "conflicts --config FILE --namespace NS [--since 24h] [--limit N]",
		Short: "List the conflicts recorded for a namespace (versions LWW dropped), from every region",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			if err := schema.ValidateName("namespace", namespace); err != nil {
				return usageError{fmt.Errorf("--namespace: %w", err)}
			}
			if since <= 0 || limit < 0 {
				return usageError{errors.New("--since must be positive and --limit not negative")}
			}
			ctx := cmd.Context()
			regions, _, release, err := open(ctx, env, cfg, true)
			if err != nil {
				return err
			}
			defer release()
			q := repair.ConflictQuery{Since: time.Now().Add(-since), Limit: limit}
			var all []repair.Conflict
			var errs []error
			listed := 0
			for _, r := range regions {
				l, ok := r.Reader.(conflictLister)
				if !ok {
					continue
				}
				listed++
				rs, err := l.ListConflicts(ctx, namespace, q)
				if err != nil {
					errs = append(errs, fmt.Errorf("region %q: %w", r.Name, err))
				}
				all = append(all, rs...)
			}
			if listed == 0 {
				return errors.New("no region holds a conflict log (not CQL regions)")
			}
			all = conflicts.Merge(all, q.Limit)
			for _, c := range all {
				fmt.Fprintln(env.Stdout, c.String())
			}
			fmt.Fprintf(env.Stdout, "%d conflicts of namespace %q since %s\n", len(all), namespace, q.Since.UTC().Format(time.RFC3339))
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	cmd.Flags().StringVar(&namespace, "namespace", "", "namespace whose conflicts to list")
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "list conflicts whose winning write is younger than this")
	cmd.Flags().IntVar(&limit, "limit", conflicts.DefaultListLimit, "the most conflicts listed, newest first")
	return cmd
}
