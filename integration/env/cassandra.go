package env

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// CQLPort is the native-protocol port every node listens on (each node has
// its own loopback address).
const CQLPort = 9042

// Node is one Cassandra node of a region.
type Node struct {
	// Region is the name of the region the node belongs to.
	Region string
	// Index is the node's position in its region, from 0.
	Index int
	// Address is the node's loopback IP (127.0.0.N).
	Address string
	// Process controls the node's JVM (pause, kill, restart).
	*Process

	dir string
	// probe configures the readiness probe's connection (TLS and
	// credentials for the secure region's node); nil for a plain node.
	probe cqlOption
}

// cqlOption configures a probe's driver connection.
type cqlOption func(*gocql.ClusterConfig)

// CQLAddr is the node's "ip:port" CQL endpoint.
func (n *Node) CQLAddr() string { return fmt.Sprintf("%s:%d", n.Address, CQLPort) }

// nodeAddress returns the loopback address of node n of region r:
// region 0 uses 127.0.0.11.., region 1 127.0.0.21.., and so on.
func nodeAddress(region, node int) string {
	return fmt.Sprintf("127.0.0.%d", 10*(region+1)+node+1)
}

// initialToken returns a balanced token for node i of n:
// i*(2^64/n) - 2^63.
func initialToken(i, n int) string {
	span := new(big.Int).Lsh(big.NewInt(1), 64)
	span.Div(span, big.NewInt(int64(n)))
	t := new(big.Int).Mul(span, big.NewInt(int64(i)))
	t.Sub(t, new(big.Int).Lsh(big.NewInt(1), 63))
	return t.String()
}

type cassandraSpec struct {
	lib       string
	dir       string // node's own directory
	cluster   string
	dc        string
	address   string
	seeds     []string
	token     string
	heap      string
	attached  bool
	jmxPort   int
	extraYAML string
}

func (s cassandraSpec) yaml() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("cluster_name: %s", s.cluster)
	w("num_tokens: 1")
	w("initial_token: %s", s.token)
	w("allocate_tokens_for_local_replication_factor: 1")
	w("partitioner: org.apache.cassandra.dht.Murmur3Partitioner")
	w("auto_bootstrap: false")
	w("commitlog_sync: periodic")
	w("commitlog_sync_period: 1000ms")
	// 5.0 defaults to direct I/O for the commit log, which keeps up to a sync
	// period of writes in the JVM: a SIGKILLed test node would lose them.
	// mmap'd segments survive a process crash (only an OS crash loses them).
	w("commitlog_disk_access_mode: legacy")
	w("endpoint_snitch: GossipingPropertyFileSnitch")
	w("seed_provider:")
	w("  - class_name: org.apache.cassandra.locator.SimpleSeedProvider")
	w("    parameters:")
	w("      - seeds: %q", strings.Join(s.seeds, ","))
	w("listen_address: %s", s.address)
	w("rpc_address: %s", s.address)
	w("native_transport_port: %d", CQLPort)
	w("storage_port: 7000")
	w("data_file_directories: [%s]", filepath.Join(s.dir, "data"))
	w("commitlog_directory: %s", filepath.Join(s.dir, "commitlog"))
	w("saved_caches_directory: %s", filepath.Join(s.dir, "saved_caches"))
	w("hints_directory: %s", filepath.Join(s.dir, "hints"))
	w("cdc_raw_directory: %s", filepath.Join(s.dir, "cdc_raw"))
	w("concurrent_reads: 8")
	w("concurrent_writes: 8")
	w("concurrent_counter_writes: 2")
	w("concurrent_materialized_view_writes: 2")
	w("concurrent_compactors: 1")
	w("auto_snapshot: false")
	w("snapshot_before_compaction: false")
	w("start_native_transport: true")
	w("native_transport_max_threads: 32")
	w("read_request_timeout: 5000ms")
	w("write_request_timeout: 2000ms")
	w("range_request_timeout: 10000ms")
	w("request_timeout: 10000ms")
	w("cas_contention_timeout: 2000ms")
	w("materialized_views_enabled: false")
	w("key_cache_size: 16MiB")
	w("memtable_heap_space: 64MiB")
	w("memtable_offheap_space: 64MiB")
	w("sstable_preemptive_open_interval: null")
	w("hinted_handoff_enabled: true")
	w("dynamic_snitch: false")
	b.WriteString(s.extraYAML)
	return b.String()
}

func (s cassandraSpec) logback() string {
	return fmt.Sprintf(`<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>%s</file>
    <encoder><pattern>%%-5level [%%thread] %%date{ISO8601} %%F:%%L - %%msg%%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <root level="WARN"><appender-ref ref="FILE"/></root>
  <logger name="org.apache.cassandra.service" level="INFO"/>
</configuration>
`, filepath.Join(s.dir, "logs", "system.log"))
}

// cassandraJVMFlags are from Cassandra's conf/jvm17-server.options and
// jvm-server.options, reduced to what a small test node needs.
func cassandraJVMFlags() []string {
	f := []string{"-Djdk.attach.allowAttachSelf=true"}
	for _, m := range []string{"java.base/jdk.internal.misc", "java.management.rmi/com.sun.jmx.remote.internal.rmi",
		"java.management/com.sun.jmx.remote.security", "java.rmi/sun.rmi.registry", "java.rmi/sun.rmi.server",
		"java.sql/java.sql", "java.base/java.lang.ref", "jdk.unsupported/sun.misc"} {
		f = append(f, "--add-exports", m+"=ALL-UNNAMED")
	}
	for _, m := range []string{"java.base/java.lang.module", "java.base/jdk.internal.loader", "java.base/jdk.internal.ref",
		"java.base/jdk.internal.reflect", "java.base/jdk.internal.math", "java.base/jdk.internal.module",
		"java.base/jdk.internal.util.jar", "java.base/sun.nio.ch", "java.base/java.io", "java.base/java.lang.reflect",
		"java.base/java.lang", "java.base/java.util", "java.base/java.nio", "jdk.management/com.sun.management.internal"} {
		f = append(f, "--add-opens", m+"=ALL-UNNAMED")
	}
	return f
}

// prepare writes the node's configuration and returns its process.
func (s cassandraSpec) prepare(name string) (*Process, error) {
	for _, d := range []string{"data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"cassandra.yaml":    s.yaml(),
		"rackdc.properties": fmt.Sprintf("dc=%s\nrack=rack1\n", s.dc),
		"logback.xml":       s.logback(),
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(s.dir, f), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	jamm, err := filepath.Glob(filepath.Join(s.lib, "jamm-*.jar"))
	if err != nil || len(jamm) == 0 {
		return nil, fmt.Errorf("%s: no jamm agent jar in %s (delete %s and fetch again)", name, s.lib, filepath.Dir(s.lib))
	}
	tmp := filepath.Join(s.dir, "tmp")
	argv := []string{javaBin(),
		"-Xms" + s.heap, "-Xmx" + s.heap, "-Xss256k", "-XX:+UseG1GC", "-XX:+CrashOnOutOfMemoryError",
		"-XX:+PerfDisableSharedMem",
		"-Djava.net.preferIPv4Stack=true", "-Dio.netty.tryReflectionSetAccessible=true",
		"-Dchronicle.analytics.disable=true",
	}
	argv = append(argv, cassandraJVMFlags()...)
	argv = append(argv,
		"-javaagent:"+jamm[0],
		"-Djava.io.tmpdir="+tmp, "-Djna.tmpdir="+tmp,
		"-Dcassandra.config=file://"+filepath.Join(s.dir, "cassandra.yaml"),
		"-Dcassandra-rackdc.properties=file://"+filepath.Join(s.dir, "rackdc.properties"),
		"-Dlogback.configurationFile="+filepath.Join(s.dir, "logback.xml"),
		"-Dcassandra.logdir="+filepath.Join(s.dir, "logs"),
		"-Dcassandra.storagedir="+filepath.Join(s.dir, "data"),
		"-Dcassandra-foreground=yes",
		"-Dcassandra.skip_wait_for_gossip_to_settle=0",
		"-Dcassandra.ring_delay_ms=1000",
		"-Dcassandra.superuser_setup_delay_ms=0",
		"-Dcassandra.migration_task_wait_in_seconds=1",
	)
	if s.jmxPort > 0 {
		argv = append(argv, fmt.Sprintf("-Dcassandra.jmx.local.port=%d", s.jmxPort))
	}
	argv = append(argv, "-cp", filepath.Join(s.lib, "*"), "org.apache.cassandra.service.CassandraDaemon")
	return &Process{
		Name:     name,
		LogFile:  filepath.Join(s.dir, "logs", "system.log"),
		argv:     argv,
		dir:      s.dir,
		outFile:  filepath.Join(s.dir, "logs", "console.log"),
		attached: s.attached,
	}, nil
}

// waitCQL waits until the node at addr answers a CQL query of its release
// version, or the process exits, or ctx ends. It returns the version.
func waitCQL(ctx context.Context, p *Process, addr string, opt cqlOption) (string, error) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if v, err := releaseVersion(ctx, addr, opt); err == nil {
			return v, nil
		}
		select {
		case <-p.exited():
			return "", startError(p, "exited during start")
		case <-ctx.Done():
			return "", startError(p, fmt.Sprintf("did not answer CQL on %s in time (%v)", addr, ctx.Err()))
		case <-tick.C:
		}
	}
}

// releaseVersion asks one node for SELECT release_version FROM system.local,
// connecting as opt says (nil: plain, no credentials).
func releaseVersion(ctx context.Context, addr string, opt cqlOption) (string, error) {
	c := gocql.NewCluster(addr)
	c.ConnectTimeout = 2 * time.Second
	c.Timeout = 2 * time.Second
	c.DisableInitialHostLookup = true
	c.NumConns = 1
	c.Logger = quietLogger{}
	c.ProtoVersion = 5
	if opt != nil {
		opt(c)
	}
	s, err := c.CreateSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	var v string
	err = s.Query(`SELECT release_version FROM system.local`).ScanContext(ctx, &v)
	return v, err
}

type quietLogger struct{}

func (quietLogger) Error(string, ...gocql.LogField)   {}
func (quietLogger) Warning(string, ...gocql.LogField) {}
func (quietLogger) Info(string, ...gocql.LogField)    {}
func (quietLogger) Debug(string, ...gocql.LogField)   {}

// startError is one clear error for a server that failed to start: what
// failed, the lines of its log that say why, and where the full log is.
func startError(p *Process, what string) error {
	reason := errorLines(p.LogFile, 5)
	reason = append(reason, errorLines(p.outFile, 5)...)
	msg := fmt.Sprintf("%s %s", p.Name, what)
	if len(reason) > 0 {
		msg += ":\n  " + strings.Join(reason, "\n  ")
	} else {
		msg += "; last log lines:\n" + p.Tail(10)
	}
	return fmt.Errorf("%w: %s\n(full log: %s)", ErrStart, msg, p.LogFile)
}
