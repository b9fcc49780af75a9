package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/config"
)

// process is one service binary the test starts, kills and restarts. Its
// output goes to a log file that the test shows when it fails.
type process struct {
	name string
	bin  string
	args []string
	env  []string
	addr string // host:port of its HTTP server
	log  string // path of its log file

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current run ended
	runs   int
}

// serviceEnv renders settings as environment variables for the binary whose
// configuration is cfg (e.g. &config.Worker{}). A name the binary does not
// read fails the test: a typo would leave the service on a default, such as
// the shared "events" topic.
func serviceEnv(t testing.TB, cfg any, settings map[string]string) []string {
	t.Helper()
	known := config.EnvNames(cfg)
	env := baseEnv()
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		if !slices.Contains(known, k) {
			t.Fatalf("%T reads no %s (it reads %v)", cfg, k, known)
		}
		env = append(env, k+"="+settings[k])
	}
	return env
}

// baseEnv is the test's environment without the variables that configure the
// services, so a developer's own settings do not leak into a scenario.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AGGREGATOR_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "PUBLISHER_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func newProcess(t testing.TB, logDir, name, bin string, env []string, addr string, args ...string) *process {
	p := &process{name: name, bin: bin, args: args, env: env, addr: addr,
		log: filepath.Join(logDir, name+".log")}
	t.Cleanup(func() { p.stop(t, 20*time.Second) })
	return p
}

// start runs the binary; it does not wait for readiness.
func (p *process) start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.exited:
		default:
			t.Fatalf("%s: started while still running", p.name)
		}
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%s: log file: %v", p.name, err)
	}
	p.runs++
	fmt.Fprintf(f, "---- run %d of %s at %s ----\n", p.runs, p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("%s: start: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "---- %s exited: %v ----\n", p.name, err)
		f.Close()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
}

// running reports whether the current run is alive.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitReady polls /readyz until it answers 200, the process exits, or the
// timeout passes.
func (p *process) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("%s exited before it was ready; log:\n%s", p.name, tail(p.log, 30))
		default:
		}
		resp, err := client.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s on %s not ready after %v (last: %s); log:\n%s", p.name, p.addr, timeout, last, tail(p.log, 30))
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (p *process) kill9(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		t.Fatalf("%s: kill -9 of a process never started", p.name)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("%s: kill -9: %v", p.name, err)
	}
	<-exited
}

// signal sends sig to the running process.
func (p *process) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		t.Fatalf("%s: signal to a process never started", p.name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v: %v", p.name, sig, err)
	}
}

// stop asks for a graceful shutdown (SIGTERM) and kills the process when it
// takes longer than grace.
func (p *process) stop(t testing.TB, grace time.Duration) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		t.Errorf("%s did not stop within %v of SIGTERM; killing it", p.name, grace)
		_ = cmd.Process.Kill()
		<-exited
	}
}

// tail returns the last n lines of a file, leaving out the per-batch
// summaries that would hide everything else.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"msg":"batch processed"`) {
			continue
		}
		lines = append(lines, sc.Text())
		if len(lines) > 4*n {
			lines = slices.Clone(lines[len(lines)-n:])
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logDir returns a directory for a scenario's logs: removed when the test
// passes, kept (and named in the output) when it fails.
func logDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "e2e-logs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// countInLog counts the log lines whose message contains s.
func countInLog(path, s string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		var l struct{ Msg string }
		if json.Unmarshal([]byte(line), &l) == nil && strings.Contains(l.Msg, s) {
			n++
		}
	}
	return n
}

// freeAddr returns a 127.0.0.1 address nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls cond every interval until it holds or ctx ends.
func waitFor(ctx context.Context, interval time.Duration, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(interval):
		}
	}
}
