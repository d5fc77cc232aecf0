package env

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The Maven projects that fetch the servers' released jars. They are
// embedded so that the environment works from any working directory.
//
//go:embed jvm/cassandra/pom.xml jvm/kafka/pom.xml
var poms embed.FS

// Product versions fetched from Maven Central (see jvm/*/pom.xml).
const (
	CassandraVersion = "5.0.8"
	KafkaVersion     = "3.9.2"
)

// ErrMissingTool is returned when java or mvn is not installed.
var ErrMissingTool = errors.New("missing tool")

// ErrFetch is returned when the jars cannot be fetched from Maven Central.
var ErrFetch = errors.New("cannot fetch jars from Maven Central")

// CacheDir is where fetched jars and the running environment's files live:
// $TIDEMARK_CACHE, else $XDG_CACHE_HOME/tidemark, else ~/.cache/tidemark.
func CacheDir() string {
	if d := os.Getenv("TIDEMARK_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "tidemark")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "tidemark")
	}
	return filepath.Join(os.TempDir(), "tidemark-cache")
}

// CheckTools verifies that java (17, as Cassandra 5.0 needs 11 or 17) and mvn
// are installed, with an error that says how to install them.
func CheckTools(ctx context.Context) error {
	java, err := exec.LookPath(javaBin())
	if err != nil {
		return fmt.Errorf("%w: java not found on PATH (Cassandra 5.0 needs JDK 17: apt-get install openjdk-17-jdk-headless, or set JAVA_HOME)", ErrMissingTool)
	}
	out, err := exec.CommandContext(ctx, java, "-version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s -version failed: %v", ErrMissingTool, java, err)
	}
	if v := javaMajor(string(out)); v != 0 && v != 11 && v != 17 {
		return fmt.Errorf("%w: %s is Java %d; Cassandra 5.0 runs on Java 11 or 17 only (set JAVA_HOME to a JDK 17)", ErrMissingTool, java, v)
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return fmt.Errorf("%w: mvn not found on PATH (the environment fetches Cassandra and Kafka jars with Maven: apt-get install maven)", ErrMissingTool)
	}
	return nil
}

func javaBin() string {
	if h := os.Getenv("JAVA_HOME"); h != "" {
		return filepath.Join(h, "bin", "java")
	}
	return "java"
}

// javaMajor extracts the major version from `java -version` output.
func javaMajor(out string) int {
	i := strings.Index(out, "version \"")
	if i < 0 {
		return 0
	}
	v := out[i+len("version \""):]
	var major int
	v = strings.TrimPrefix(v, "1.")
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		major = major*10 + int(c-'0')
	}
	return major
}

// FetchJars makes sure the Cassandra and Kafka jars are in the cache and
// returns their lib directories. A second call downloads nothing: a lib
// directory is used as soon as its completion marker exists.
func FetchJars(ctx context.Context, logf func(string, ...any)) (cassandraLib, kafkaLib string, err error) {
	if err := CheckTools(ctx); err != nil {
		return "", "", err
	}
	cassandraLib, err = fetchOne(ctx, "cassandra", CassandraVersion, logf)
	if err != nil {
		return "", "", err
	}
	kafkaLib, err = fetchOne(ctx, "kafka", KafkaVersion, logf)
	if err != nil {
		return "", "", err
	}
	return cassandraLib, kafkaLib, nil
}

func fetchOne(ctx context.Context, product, version string, logf func(string, ...any)) (string, error) {
	dir := filepath.Join(CacheDir(), "jars", product+"-"+version)
	lib := filepath.Join(dir, "lib")
	marker := filepath.Join(dir, ".complete")
	if _, err := os.Stat(marker); err == nil {
		return lib, nil
	}
	pom, err := poms.ReadFile("jvm/" + product + "/pom.xml")
	if err != nil {
		return "", err
	}
	work := filepath.Join(dir, "mvn")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(work, "pom.xml"), pom, 0o644); err != nil {
		return "", err
	}
	_ = os.RemoveAll(lib)
	logf("fetching %s %s jars from Maven Central (once; cached in %s)", product, version, dir)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	args := []string{"-B", "-q", "-Dlib.dir=" + lib}
	// TIDEMARK_MVN_SETTINGS names a settings.xml (a mirror, a proxy, a
	// private repository) for this fetch.
	if s := os.Getenv("TIDEMARK_MVN_SETTINGS"); s != "" {
		args = append(args, "-s", s)
	}
	cmd := exec.CommandContext(ctx, "mvn", append(args, "package")...)
	cmd.Dir = work
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: mvn package for %s %s failed (%v); is Maven Central reachable (proxy settings in ~/.m2/settings.xml)? mvn said:\n%s",
			ErrFetch, product, version, err, lastLines(out.String(), 15))
	}
	jars, _ := filepath.Glob(filepath.Join(lib, "*.jar"))
	if len(jars) == 0 {
		return "", fmt.Errorf("%w: mvn succeeded but %s holds no jars", ErrFetch, lib)
	}
	if err := os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", err
	}
	logf("fetched %d %s jars in %s", len(jars), product, time.Since(start).Round(time.Second))
	return lib, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
