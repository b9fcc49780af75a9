package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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
