//go:build docker

package integration

// Run with: TIDEMARK_ENV=docker go test -tags docker ./integration -run TestContainersEnvironment

import (
	"testing"

	"github.com/testcontainers/testcontainers-go"
)

// TestContainersEnvironment starts the testcontainers environment when
// TIDEMARK_ENV=docker is set, and checks that its Cassandra regions are
// separate clusters on 5.0. It is the one test that runs only for Docker
// users, and it skips with testcontainers' own message where no Docker
// daemon runs.
func TestContainersEnvironment(t *testing.T) {
	if shared.local != nil {
		t.Skip("the local (non-Docker) environment is in use; set TIDEMARK_ENV=docker to test the testcontainers path")
	}
	testcontainers.SkipIfProviderIsNotHealthy(t)
	checkReleaseVersions(t, testEnv(t))
}
