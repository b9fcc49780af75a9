package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// bin holds the paths of the binaries built once for the whole run.
var bin struct {
	ingest, worker, query, publisher string
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build the binaries:", err)
		return 1
	}
	return m.Run()
}

// build compiles the four binaries from the workspace root. They are built
// without the race detector: the processes under test must keep up with the
// load, and the race detector stays on for the test process itself.
func build(dir string) error {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	bin.ingest = filepath.Join(dir, "ingest")
	bin.worker = filepath.Join(dir, "worker")
	bin.query = filepath.Join(dir, "query")
	bin.publisher = filepath.Join(dir, "publisher")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"./services/ingest", "./services/worker", "./services/query", "./services/publisher")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "e2e: built ingest, worker, query and publisher in %.1fs\n", time.Since(start).Seconds())
	return nil
}
