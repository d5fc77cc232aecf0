// Command repaird is Tidemark's repair daemon: anti-entropy repair of every
// namespace across regions, hint replay, a status page and a control API.
//
//	repaird validate --config repaird.yaml
//	repaird repair   --config repaird.yaml --namespace users [--dry-run] [--segments N] [--fresh]
//	repaird serve    --config repaird.yaml
//	repaird status | runs | start | pause | resume | abort | tune | hints   (a running daemon)
//
// See docs/repair.md and docs/operations.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tidemark/tidemark/cmd/repaird/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
