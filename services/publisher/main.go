// Command publisher is the Event Aggregator's load generator and at-least-once
// delivery simulator: it publishes distinct events plus deliberate re-sends,
// retries like a real publisher, and checks that the aggregator stored each
// acknowledged event exactly once.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/event-aggregator/event-aggregator/services/publisher/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(exitCode(err))
	}
}

// Exit codes.
const (
	exitFailed = 1 // verification failed, events unacknowledged, or the run broke off
	exitUsage  = 2
)

// exitError carries the process exit code for an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code
	}
	return exitFailed
}

// run parses args, publishes, prints the summary to stdout and returns an
// error whose exit code says how the run went.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, helped, err := parseArgs(args, stdout, stderr)
	if helped {
		return nil
	}
	if err != nil {
		return &exitError{exitUsage, fmt.Errorf("%w (see --help)", err)}
	}
	cfg := c.config()
	if cfg.RunID == "" {
		cfg.RunID = randomRunID()
	}
	if err := cfg.Validate(); err != nil {
		return &exitError{exitUsage, err}
	}

	var bar *progress
	if !c.NoProgress && !c.JSON && isTerminal(stderr) {
		bar = newProgress(stderr, cfg.Events+loadgen.DuplicateCount(cfg.Events, cfg.Duplicates))
		cfg.Progress = bar.add
		cfg.Notify = bar.notify
	}

	rep, runErr := loadgen.Run(ctx, cfg)
	if bar != nil {
		bar.close()
	}
	if rep == nil {
		return runErr
	}
	// A run that broke off during verification still reports what it sent.
	if err := printReport(stdout, rep, c.JSON); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if runErr != nil {
		return runErr
	}
	if p := rep.Problems(); len(p) > 0 {
		return &exitError{exitFailed, errors.New(strings.Join(p, "; "))}
	}
	return nil
}

func printReport(w io.Writer, rep *loadgen.Report, asJSON bool) error {
	if !asJSON {
		return writeSummary(w, rep)
	}
	return json.NewEncoder(w).Encode(rep) // one line, for scripts
}

// randomRunID keeps separate runs' event ids apart.
func randomRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails
	return "run-" + hex.EncodeToString(b[:])
}
