package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/config"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// images are the binaries shipped as container images, with the address each listens on
// ("" for the publisher, a client).
var images = []struct{ service, addr string }{
	{"ingest", config.IngestAddr},
	{"worker", config.WorkerAddr},
	{"query", config.QueryAddr},
	{"aggregator", config.AggregatorAddr},
	{"publisher", ""},
}

type instruction struct {
	cmd, args string
}

// parseDockerfile returns a Dockerfile's instructions, continuation lines joined and
// comments dropped.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDockerfiles(t *testing.T) {
	for _, img := range images {
		t.Run(img.service, func(t *testing.T) {
			ins := parseDockerfile(t, repoPath("services", img.service, "Dockerfile"))
			var froms []string
			var final []instruction // the instructions of the last stage
			for _, i := range ins {
				if i.cmd == "FROM" {
					froms = append(froms, i.args)
					final = nil
				}
				final = append(final, i)
			}
			if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:1.26 ") ||
				froms[1] != "gcr.io/distroless/static-debian12:nonroot" {
				t.Errorf("stages %q, want a golang:1.26 builder and gcr.io/distroless/static-debian12:nonroot", froms)
			}
			all := func(cmd string) []string {
				var args []string
				for _, i := range ins {
					if i.cmd == cmd {
						args = append(args, i.args)
					}
				}
				return args
			}
			last := func(cmd string) string {
				var args string
				for _, i := range final {
					if i.cmd == cmd {
						args = i.args
					}
				}
				return args
			}
			env := strings.Join(all("ENV"), " ")
			if !strings.Contains(env, "GOWORK=off") || !strings.Contains(env, "CGO_ENABLED=0") {
				t.Errorf("builder ENV %q, want GOWORK=off and CGO_ENABLED=0", env)
			}
			runs := strings.Join(all("RUN"), "\n")
			if !strings.Contains(runs, "go mod download") {
				t.Error("no `go mod download` layer")
			}
			if !strings.Contains(runs, `go build -trimpath -ldflags "-s -w"`) {
				t.Errorf("go build is not -trimpath -ldflags \"-s -w\": %s", runs)
			}
			// The dependency layer copies only go.mod/go.sum, before the sources.
			copies := all("COPY")
			depIdx := slices.Index(copies, "services/"+img.service+"/go.* services/"+img.service+"/")
			srcIdx := slices.Index(copies, "services/"+img.service+"/ services/"+img.service+"/")
			if depIdx < 0 || srcIdx < 0 || depIdx > srcIdx || !slices.Contains(copies, "pkg/go.* pkg/") || !slices.Contains(copies, "pkg/ pkg/") {
				t.Errorf("COPY %q: want go.mod/go.sum of pkg and the service first, then their sources", copies)
			}
			if u := last("USER"); u != "65532:65532" && u != "nonroot" && u != "nonroot:nonroot" {
				t.Errorf("final USER %q, want the non-root 65532", u)
			}
			bin := "/usr/local/bin/" + img.service
			if e := last("ENTRYPOINT"); e != `["`+bin+`"]` {
				t.Errorf("ENTRYPOINT %s, want [%q]", e, bin)
			}
			if img.addr == "" {
				return
			}
			if c := last("CMD"); c != `["serve"]` {
				t.Errorf("CMD %s, want [\"serve\"]", c)
			}
			if p := last("EXPOSE"); p != portString(port(t, img.addr)) {
				t.Errorf("EXPOSE %q, want %d (pkg/config)", p, port(t, img.addr))
			}
			if h := last("HEALTHCHECK"); !strings.Contains(h, `CMD ["`+bin+`", "healthcheck"]`) {
				t.Errorf("HEALTHCHECK %q, want the binary's healthcheck subcommand", h)
			}
		})
	}
}

// TestDockerignore checks that the build context keeps what the Dockerfiles copy and
// drops the rest.
func TestDockerignore(t *testing.T) {
	f, err := os.Open(repoPath(".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(rel string) bool {
		ok, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, dir := range []string{"pkg", "services"} {
		err := filepath.WalkDir(repoPath(dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(repoRoot, path)
			// Everything but tests and build or run leftovers may be compiled or embedded.
			name, slash := d.Name(), filepath.ToSlash(rel)
			needed := !strings.HasSuffix(name, "_test.go") && !strings.Contains(slash, "/testdata/") &&
				!(strings.HasPrefix(slash, "services/") && strings.Contains(slash, "/data/")) && !slices.Contains([]string{".test", ".out", ".prof"}, filepath.Ext(name))
			if needed && excluded(rel) {
				t.Errorf(".dockerignore excludes %s, which the images need", rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, rel := range []string{".git/config", "charts/event-aggregator/Chart.yaml", "docs/deploy.md", "test/deploy/go.mod",
		"go.work", ".cache/bin/helm", "services/aggregator/aggregator.test", "pkg/event/decode_test.go", "services/aggregator/data/events.db"} {
		if !excluded(rel) {
			t.Errorf(".dockerignore lets %s into the build context", rel)
		}
	}
}

// TestServiceModulesBuildAlone checks what each Dockerfile relies on: the service is a
// module of its own that resolves with the workspace off (GOWORK=off), through its replace
// of ../../pkg and its own complete go.sum.
func TestServiceModulesBuildAlone(t *testing.T) {
	for _, img := range images {
		t.Run(img.service, func(t *testing.T) {
			dir := repoPath("services", img.service)
			gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(gomod), "github.com/event-aggregator/event-aggregator/pkg => ../../pkg") {
				t.Errorf("services/%s/go.mod has no replace of .../pkg => ../../pkg", img.service)
			}
			out, err := runEnv(t, 4*time.Minute, dir, []string{"GOWORK=off", "GOFLAGS=-mod=readonly"},
				"go", "list", "-deps", "-f", "{{if .Error}}{{.ImportPath}}: {{.Error}}{{end}}", ".")
			if err != nil {
				lines := strings.Split(err.Error(), "\n")
				if len(lines) > 8 {
					lines = append(lines[:8], "…")
				}
				t.Fatalf("services/%s does not resolve on its own (run `GOWORK=off go mod tidy` there): %s", img.service, strings.Join(lines, "\n"))
			}
			if s := strings.TrimSpace(string(out)); s != "" {
				t.Errorf("services/%s: %s", img.service, s)
			}
		})
	}
}
