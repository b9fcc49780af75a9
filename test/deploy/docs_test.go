package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// TestDocsPaths checks that every repository path the deployment docs mention exists.
func TestDocsPaths(t *testing.T) {
	pathRE := regexp.MustCompile(`\b(?:charts|k8s|services|scripts|docs|test)/[A-Za-z0-9_.*/-]*[A-Za-z0-9_*/]`)
	for _, doc := range []string{"docs/deploy.md", chartDir + "/README.md", "docker-compose.yml", "skaffold.yaml"} {
		data, err := os.ReadFile(repoPath(doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pathRE.FindAllString(string(data), -1) {
			p = strings.TrimSuffix(p, "/")
			matches, err := filepath.Glob(repoPath(p))
			if err != nil || len(matches) == 0 {
				t.Errorf("%s mentions %s, which does not exist", doc, p)
			}
		}
	}
}

// citedFileKinds are the files whose text may point at other files.
var citedFileKinds = []string{".go", ".md", ".sh", ".yaml", ".yml"}

// Written in pieces so that this file does not cite them itself.
var outsideCitations = []string{"DESIGN" + ".md", "DESIGN" + " §", ".." + "/shared"}

var (
	// A path from the repository root, not part of a longer path or an
	// import path.
	rootPathRE = regexp.MustCompile("(?:^|[\\s(\"'`])((?:pkg|services|docs|scripts|charts|k8s|test|tools)/[A-Za-z0-9_.*/-]*[A-Za-z0-9_*])")
	mdLinkRE   = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	// A section of the architecture page cited by name.
	sectionRE  = regexp.MustCompile(`architecture\.md(?:,\s*|\s*\(\s*)"([^"]+)"`)
	testNameRE = regexp.MustCompile("`([Tt]est[A-Z][A-Za-z0-9_]*)(?:/[A-Za-z0-9_-]+)?`")
	funcRE     = regexp.MustCompile(`(?m)^func ([A-Za-z0-9_]+)\(`)
	headingRE  = regexp.MustCompile(`(?m)^#+ (.+)$`)
)

// repoFiles returns the repository's files of the given kinds, relative to
// its root. Symlinks (the shared .cache) and generated directories are skipped.
func repoFiles(t *testing.T, kinds []string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repoRoot, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", "node_modules", "data":
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&os.ModeSymlink != 0 || !slices.Contains(kinds, filepath.Ext(path)) {
			return nil
		}
		rel, err := filepath.Rel(repoRoot, path)
		out = append(out, rel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no files found under " + repoRoot)
	}
	return out
}

// citingText is the part of a file that speaks to readers: a Go file's
// comments, any other file whole.
func citingText(rel string, data []byte) string {
	if filepath.Ext(rel) != ".go" {
		return string(data)
	}
	var b strings.Builder
	for line := range strings.Lines(string(data)) {
		if _, comment, ok := strings.Cut(line, "//"); ok {
			b.WriteString(" " + comment)
		}
	}
	return b.String()
}

// TestCitationsResolve fails on a comment or document that cites a file that
// is not in the repository: a design page kept elsewhere, a path from the
// repository root or a markdown link that does not resolve, a section of
// docs/architecture.md that does not exist.
func TestCitationsResolve(t *testing.T) {
	arch, err := os.ReadFile(repoPath("docs/architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(string(arch), -1) {
		sections[strings.TrimSpace(m[1])] = true
	}
	files := repoFiles(t, citedFileKinds)
	for _, rel := range files {
		data, err := os.ReadFile(repoPath(rel))
		if err != nil {
			t.Fatal(err)
		}
		text := citingText(rel, data)
		for _, c := range outsideCitations {
			if strings.Contains(text, c) {
				t.Errorf("%s cites %q, which is not in the repository", rel, c)
			}
		}
		for _, m := range rootPathRE.FindAllStringSubmatch(text, -1) {
			p := strings.TrimSuffix(m[1], ".")
			if matches, err := filepath.Glob(repoPath(p)); err != nil || len(matches) == 0 {
				t.Errorf("%s mentions %s, which does not exist", rel, p)
			}
		}
		for _, m := range sectionRE.FindAllStringSubmatch(text, -1) {
			if !sections[m[1]] {
				t.Errorf("%s cites the section %q of docs/architecture.md, which has no such heading", rel, m[1])
			}
		}
		if filepath.Ext(rel) != ".md" {
			continue
		}
		for _, m := range mdLinkRE.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			if file == "" {
				if !slices.Contains(anchors(text), anchor) {
					t.Errorf("%s links to #%s, which is no heading of it", rel, anchor)
				}
				continue
			}
			if _, err := os.Stat(filepath.Join(repoRoot, filepath.Dir(rel), file)); err != nil {
				t.Errorf("%s links to %s, which does not exist", rel, target)
			}
		}
	}
}

// anchors are the link targets GitHub gives a markdown page's headings.
func anchors(md string) []string {
	var out []string
	for _, m := range headingRE.FindAllStringSubmatch(md, -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(m[1])) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// TestFailureMatrixTestsExist: every test docs/architecture.md names as the
// proof of a row is defined somewhere in the repository.
func TestFailureMatrixTestsExist(t *testing.T) {
	arch, err := os.ReadFile(repoPath("docs/architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, rel := range repoFiles(t, []string{".go"}) {
		data, err := os.ReadFile(repoPath(rel))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range funcRE.FindAllStringSubmatch(string(data), -1) {
			defined[m[1]] = true
		}
	}
	named := testNameRE.FindAllStringSubmatch(string(arch), -1)
	if len(named) < 20 {
		t.Fatalf("docs/architecture.md names %d tests; the failure matrix should name every proof", len(named))
	}
	for _, m := range named {
		if !defined[m[1]] {
			t.Errorf("docs/architecture.md names %s, which no Go file defines", m[1])
		}
	}
}
