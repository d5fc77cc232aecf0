package integration

import (
	"context"

	"github.com/tidemark/tidemark/integration/env"
	"github.com/tidemark/tidemark/integration/env/containers"
)

// startContainers is the TIDEMARK_ENV=docker environment.
func startContainers(ctx context.Context) (env.Env, error) {
	e, err := containers.Start(ctx, containers.Options{})
	if err != nil {
		return nil, err
	}
	return e, nil
}
