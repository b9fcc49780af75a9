package deploy

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/event-aggregator/event-aggregator/pkg/config"
)

// loadCompose loads docker-compose.yml with the compose-spec loader (schema validation,
// interpolation, merge keys, path resolution), every profile on and no host environment.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{repoPath("docker-compose.yml")},
		cli.WithWorkingDirectory(repoRoot),
		cli.WithEnv([]string{}),
		cli.WithProfiles([]string{"*"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return project
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return s
}

func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

func TestComposeInfrastructure(t *testing.T) {
	p := loadCompose(t)

	kafka := service(t, p, "kafka")
	if !strings.HasPrefix(kafka.Image, "apache/kafka:") || strings.HasSuffix(kafka.Image, ":latest") {
		t.Errorf("kafka image %q, want a pinned apache/kafka tag", kafka.Image)
	}
	if env(kafka, "KAFKA_PROCESS_ROLES") != "broker,controller" || env(kafka, "KAFKA_CONTROLLER_QUORUM_VOTERS") == "" {
		t.Errorf("kafka is not a single KRaft node")
	}
	if !strings.Contains(env(kafka, "KAFKA_ADVERTISED_LISTENERS"), "//kafka:9092") {
		t.Errorf("kafka advertises %q, want kafka:9092 to the other containers", env(kafka, "KAFKA_ADVERTISED_LISTENERS"))
	}

	postgres := service(t, p, "postgres")
	if postgres.Image != "postgres:16" {
		t.Errorf("postgres image %q, want postgres:16", postgres.Image)
	}
	if postgres.HealthCheck == nil || !strings.Contains(strings.Join(postgres.HealthCheck.Test, " "), "pg_isready") {
		t.Errorf("postgres healthcheck %+v, want pg_isready", postgres.HealthCheck)
	}

	redis := service(t, p, "redis")
	if !strings.HasPrefix(redis.Image, "redis:7") {
		t.Errorf("redis image %q, want redis:7", redis.Image)
	}
	if !strings.Contains(strings.Join(redis.Command, " "), "--appendonly yes") {
		t.Errorf("redis command %q: the append-only file is off", redis.Command)
	}

	jaeger := service(t, p, "jaeger")
	if !strings.HasPrefix(jaeger.Image, "jaegertracing/jaeger:2.") {
		t.Errorf("jaeger image %q, want a pinned Jaeger v2 tag", jaeger.Image)
	}
	for _, want := range []uint32{4317, 4318, 16686} {
		if !publishes(jaeger, want) {
			t.Errorf("jaeger does not publish port %d", want)
		}
	}

	for name, target := range map[string]string{
		"kafka":    "/var/lib/kafka/data",
		"postgres": "/var/lib/postgresql/data",
		"redis":    "/data",
	} {
		s := service(t, p, name)
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s has no healthcheck", name)
		}
		i := slices.IndexFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == target })
		if i < 0 || s.Volumes[i].Type != types.VolumeTypeVolume {
			t.Errorf("%s: no named volume on %s", name, target)
		} else if _, ok := p.Volumes[s.Volumes[i].Source]; !ok {
			t.Errorf("%s: volume %s is not declared", name, s.Volumes[i].Source)
		}
	}
}

func publishes(s types.ServiceConfig, target uint32) bool {
	return slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool { return p.Target == target && p.Published != "" })
}

// TestComposeServices checks each binary's service against pkg/config: every variable its
// configuration reads is set, nothing else but OTEL_*, and the addresses, ports and URLs
// lead to the other services.
func TestComposeServices(t *testing.T) {
	p := loadCompose(t)
	postgres := service(t, p, "postgres")
	binaries := []struct {
		service, image string
		comp           component
	}{
		{"ingest", "event-aggregator/ingest", components[0]},
		{"worker", "event-aggregator/worker", components[1]},
		{"migrate", "event-aggregator/worker", components[1]},
		{"query", "event-aggregator/query", components[2]},
	}
	for _, b := range binaries {
		t.Run(b.service, func(t *testing.T) {
			s := service(t, p, b.service)
			if s.Image != b.image {
				t.Errorf("image %q, want %q", s.Image, b.image)
			}
			checkComposeBuild(t, s, b.comp.name)

			names, _ := envNames(b.comp.cfg)
			got := map[string]bool{}
			for name := range s.Environment {
				if !extraEnv(name) {
					got[name] = true
				}
			}
			if d := diff(got, names); d != "" {
				t.Errorf("environment differs from pkg/config's %T: %s", b.comp.cfg, d)
			}
			// Unset values pass through from the shell; only optional settings may do that.
			for name, v := range s.Environment {
				if v == nil && name != "AGGREGATOR_API_KEYS" {
					t.Errorf("%s has no value", name)
				}
			}
			wantPort := port(t, b.comp.addr)
			if got := env(s, "AGGREGATOR_ADDR"); got != net.JoinHostPort("", portString(wantPort)) {
				t.Errorf("AGGREGATOR_ADDR=%q, want :%d (pkg/config)", got, wantPort)
			}
			if b.service == "migrate" {
				if !slices.Equal([]string(s.Command), []string{"migrate"}) {
					t.Errorf("command %q, want [migrate]", s.Command)
				}
				if s.Restart != "" && s.Restart != types.RestartPolicyNo {
					t.Errorf("restart %q: a one-shot service must not restart", s.Restart)
				}
				checkDependsOn(t, s, map[string]string{"postgres": types.ServiceConditionHealthy})
				return
			}
			if len(s.Command) != 0 && !slices.Equal([]string(s.Command), []string{"serve"}) {
				t.Errorf("command %q, want the image's default (serve)", s.Command)
			}
			if env(s, "OTEL_SERVICE_NAME") != b.comp.name {
				t.Errorf("OTEL_SERVICE_NAME=%q, want %q", env(s, "OTEL_SERVICE_NAME"), b.comp.name)
			}
			checkURLService(t, p, "OTEL_EXPORTER_OTLP_ENDPOINT", env(s, "OTEL_EXPORTER_OTLP_ENDPOINT"), "jaeger")
			if s.HealthCheck == nil || !slices.Contains(s.HealthCheck.Test, "healthcheck") {
				t.Errorf("healthcheck %+v, want the binary's healthcheck subcommand", s.HealthCheck)
			}
			if names["AGGREGATOR_KAFKA_BROKERS"] && env(s, "AGGREGATOR_KAFKA_BROKERS") != "kafka:9092" {
				t.Errorf("AGGREGATOR_KAFKA_BROKERS=%q, want kafka:9092", env(s, "AGGREGATOR_KAFKA_BROKERS"))
			}
			if names["AGGREGATOR_REDIS_URL"] {
				checkURLService(t, p, "AGGREGATOR_REDIS_URL", env(s, "AGGREGATOR_REDIS_URL"), "redis")
			}
			if names["AGGREGATOR_POSTGRES_URL"] {
				u := checkURLService(t, p, "AGGREGATOR_POSTGRES_URL", env(s, "AGGREGATOR_POSTGRES_URL"), "postgres")
				if u != nil {
					pass, _ := u.User.Password()
					if u.User.Username() != env(postgres, "POSTGRES_USER") || pass != env(postgres, "POSTGRES_PASSWORD") ||
						strings.TrimPrefix(u.Path, "/") != env(postgres, "POSTGRES_DB") {
						t.Errorf("AGGREGATOR_POSTGRES_URL %s does not match the postgres service's credentials", u.Redacted())
					}
				}
				// The one-shot migrate service owns the schema.
				if env(s, "AGGREGATOR_MIGRATE_ON_START") != "false" {
					t.Errorf("AGGREGATOR_MIGRATE_ON_START=%q, want false", env(s, "AGGREGATOR_MIGRATE_ON_START"))
				}
			}
			switch b.service {
			case "ingest":
				checkDependsOn(t, s, map[string]string{"kafka": types.ServiceConditionHealthy})
			case "worker":
				checkDependsOn(t, s, map[string]string{
					"kafka":    types.ServiceConditionHealthy,
					"redis":    types.ServiceConditionHealthy,
					"postgres": types.ServiceConditionHealthy,
					"migrate":  types.ServiceConditionCompletedSuccessfully,
				})
				if s.GetScale() != 2 {
					t.Errorf("%d workers, want 2", s.GetScale())
				}
			case "query":
				checkDependsOn(t, s, map[string]string{
					"postgres": types.ServiceConditionHealthy,
					"migrate":  types.ServiceConditionCompletedSuccessfully,
				})
			}
			// The README's promise: publish to :8080, read from :8081.
			if b.service != "worker" {
				i := slices.IndexFunc(s.Ports, func(p types.ServicePortConfig) bool { return p.Target == uint32(wantPort) })
				if i < 0 || s.Ports[i].Published != portString(wantPort) {
					t.Errorf("ports %+v, want %d published on %d", s.Ports, wantPort, wantPort)
				}
			}
		})
	}

	t.Run("publisher", func(t *testing.T) {
		s := service(t, p, "publisher")
		if !slices.Equal(s.Profiles, []string{"load"}) {
			t.Errorf("profiles %v, want [load]", s.Profiles)
		}
		checkComposeBuild(t, s, "publisher")
		checkURLService(t, p, "PUBLISHER_URL", env(s, "PUBLISHER_URL"), "ingest")
		checkURLService(t, p, "PUBLISHER_QUERY_URL", env(s, "PUBLISHER_QUERY_URL"), "query")
		known := envTags(t, repoPath("services", "publisher"))
		for name := range s.Environment {
			if !known[name] {
				t.Errorf("%s is not read by the publisher (its PUBLISHER_* flags: %v)", name, sortedKeys(known))
			}
		}
		checkDependsOn(t, s, map[string]string{"ingest": types.ServiceConditionHealthy, "query": types.ServiceConditionHealthy})
	})
}

func portString(p int32) string { return strconv.Itoa(int(p)) }

// checkComposeBuild checks that a service builds its image from the repository root with
// its own Dockerfile.
func checkComposeBuild(t *testing.T, s types.ServiceConfig, name string) {
	t.Helper()
	if s.Build == nil {
		t.Errorf("%s: no build section", s.Name)
		return
	}
	if filepath.Clean(s.Build.Context) != repoRoot {
		t.Errorf("%s: build context %s, want the repository root", s.Name, s.Build.Context)
	}
	dockerfile := s.Build.Dockerfile
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(s.Build.Context, dockerfile)
	}
	if want := repoPath("services", name, "Dockerfile"); filepath.Clean(dockerfile) != want {
		t.Errorf("%s: Dockerfile %s, want %s", s.Name, dockerfile, want)
	} else if _, err := os.Stat(dockerfile); err != nil {
		t.Errorf("%s: %v", s.Name, err)
	}
}

func checkDependsOn(t *testing.T, s types.ServiceConfig, want map[string]string) {
	t.Helper()
	for dep, cond := range want {
		got, ok := s.DependsOn[dep]
		if !ok || got.Condition != cond {
			t.Errorf("%s: depends_on %s: %+v, want condition %s", s.Name, dep, got, cond)
		}
	}
}

// checkURLService checks that a URL names a service of the project on a port it exposes
// to the other containers (its image's EXPOSE is not known here, so: a port it publishes
// or the well-known port of its image).
func checkURLService(t *testing.T, p *types.Project, what, raw, wantService string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Errorf("%s=%q is not a URL", what, raw)
		return nil
	}
	if u.Hostname() != wantService {
		t.Errorf("%s=%q, want host %s", what, raw, wantService)
	}
	if _, err := p.GetService(u.Hostname()); err != nil {
		t.Errorf("%s=%q: %v", what, raw, err)
	}
	known := map[string]string{"postgres": "5432", "redis": "6379", "jaeger": "4318",
		"ingest": portString(port(t, config.IngestAddr)), "query": portString(port(t, config.QueryAddr))}
	if want := known[u.Hostname()]; want != "" && u.Port() != want {
		t.Errorf("%s=%q, want port %s", what, raw, want)
	}
	return u
}

// envTags collects the env tags of a package's struct fields: the variables a kong command
// line outside pkg/config reads.
func envTags(t *testing.T, dir string) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			field, ok := n.(*ast.Field)
			if !ok || field.Tag == nil {
				return true
			}
			tag, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				return true
			}
			if env, ok := reflect.StructTag(tag).Lookup("env"); ok {
				for _, name := range strings.Split(env, ",") {
					names[name] = true
				}
			}
			return true
		})
	}
	if len(names) == 0 {
		t.Fatalf("%s declares no env tags", dir)
	}
	return names
}
