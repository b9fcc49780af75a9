package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// The chaos runs that stop, restart or flush a server get a private one, so
// the servers other tests share are never disturbed.

// redisServer is a private redis-server on a free port.
type redisServer struct {
	proc   *process
	url    string
	client *redis.Client
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	path := testdeps.RedisServerBinary(t)
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	// No persistence: a restart starts empty, like a lost cache.
	p := newProcess(t, dir, "redis", path, baseEnv(), addr,
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	r := &redisServer{proc: p, url: "redis://" + addr + "/0",
		client: redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})}
	t.Cleanup(func() { r.client.Close() })
	r.start(t)
	return r
}

func (r *redisServer) start(t *testing.T) {
	t.Helper()
	r.proc.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var err error
	if !waitFor(ctx, 50*time.Millisecond, func() bool { err = r.client.Ping(ctx).Err(); return err == nil }) {
		t.Fatalf("private redis-server on %s does not answer: %v\n%s", r.proc.addr, err, tail(r.proc.log, 20))
	}
}

// postgresServer is a private Postgres cluster on a free port.
type postgresServer struct {
	bindir string
	dir    string
	data   string
	port   string
	asUser []string // runs a command as the cluster's OS user
	url    string   // of its "aggregator" database
}

func startPostgres(t *testing.T) *postgresServer {
	t.Helper()
	bindir := postgresBinDir(t)
	dir, err := os.MkdirTemp("", "e2e-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &postgresServer{bindir: bindir, dir: dir, data: filepath.Join(dir, "data")}
	if os.Geteuid() == 0 {
		// Postgres refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, and no postgres user to run a private cluster as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		s.asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	s.mustRun(t, "initdb", "-D", s.data, "-U", "aggregator", "--auth=trust", "-E", "UTF8",
		"--locale=C.UTF-8", "--no-sync")
	_, s.port, _ = net.SplitHostPort(freeAddr(t))
	s.start(t)
	t.Cleanup(func() {
		// Already down when the test failed while it was restarting.
		_ = s.run("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "-t", "60", "stop")
	})

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.urlOf("postgres"))
	if err != nil {
		t.Fatalf("connect to the private postgres: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE aggregator"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	s.url = s.urlOf("aggregator")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- private postgres: last lines of its log ----\n%s", tail(filepath.Join(dir, "server.log"), 30))
		}
	})
	return s
}

func (s *postgresServer) urlOf(db string) string {
	return fmt.Sprintf("postgres://aggregator:aggregator@127.0.0.1:%s/%s?sslmode=disable", s.port, db)
}

func (s *postgresServer) start(t *testing.T) {
	t.Helper()
	s.mustRun(t, "pg_ctl", "-D", s.data, "-l", filepath.Join(s.dir, "server.log"), "-w", "-t", "60",
		"-o", "-p "+s.port+" -k "+s.dir+" -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off",
		"start")
}

// stop is a crash of the server: no checkpoint, clients cut off mid-query.
func (s *postgresServer) stop(t *testing.T) {
	t.Helper()
	s.mustRun(t, "pg_ctl", "-D", s.data, "-m", "immediate", "-w", "-t", "60", "stop")
}

// run runs a server program as the cluster's OS user. Its output goes to a
// file, not a pipe: the server pg_ctl leaves running would hold a pipe open.
func (s *postgresServer) run(prog string, args ...string) error {
	f, err := os.OpenFile(filepath.Join(s.dir, "ctl.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	argv := append(slices.Clone(s.asUser), append([]string{filepath.Join(s.bindir, prog)}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = f, f
	return cmd.Run()
}

func (s *postgresServer) mustRun(t *testing.T, prog string, args ...string) {
	t.Helper()
	if err := s.run(prog, args...); err != nil {
		t.Fatalf("%s %v: %v\n%s", prog, args, err, tail(filepath.Join(s.dir, "ctl.log"), 20))
	}
}

// postgresBinDir finds the newest installed server's programs (Debian keeps
// them per version under /usr/lib/postgresql).
func postgresBinDir(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	for _, d := range slices.Backward(dirs) {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	t.Fatalf("no Postgres server programs (initdb, pg_ctl) found: run scripts/deps.sh up postgres, which installs them")
	return ""
}
