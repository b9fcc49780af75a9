package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/config"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// secureSettings are the settings of a service that reaches Kafka through
// the SASL_SSL listener as the restricted user, with topic creation off (as
// the chart deploys it).
func secureSettings(k testdeps.KafkaSASL, mechanism string) map[string]string {
	return map[string]string{
		"AGGREGATOR_KAFKA_BROKERS":        strings.Join(k.Brokers, ","),
		"AGGREGATOR_KAFKA_TLS":            "true",
		"AGGREGATOR_KAFKA_TLS_CA_FILE":    k.CAFile,
		"AGGREGATOR_KAFKA_SASL_MECHANISM": mechanism,
		"AGGREGATOR_KAFKA_SASL_USERNAME":  k.User,
		"AGGREGATOR_KAFKA_CREATE_TOPICS":  "false",
		"AGGREGATOR_LOG_LEVEL":            "info",
	}
}

// newSecureStack is newStack with ingest and workers on the SASL_SSL
// listener. The principal may only READ, WRITE and DESCRIBE the stack's two
// topics and READ its group; the test itself (topics, offsets) uses the
// PLAINTEXT listener, whose principal is a super user.
func newSecureStack(t *testing.T, k testdeps.KafkaSASL, workers int) *stack {
	t.Helper()
	s := &stack{
		t:        t,
		pgURL:    testdeps.NewPostgresDB(t),
		redisURL: testdeps.RedisURL(t),
		brokers:  testdeps.KafkaBrokers(t),
		logDir:   logDir(t),
		http:     &http.Client{Timeout: 10 * time.Second},
		group:    "e2e-secure-" + randomHex(6),
	}
	s.topic = testdeps.NewKafkaTopic(t, partitions)
	s.dlq = testdeps.NewKafkaTopic(t, 1)
	testdeps.GrantKafkaACLs(t, k.Principal(), s.group, s.topic, s.dlq)

	s.connect(t)
	s.migrate(t)

	// The ingest reads its password from the environment, the workers from
	// a file, as a mounted Secret provides it; each uses another mechanism.
	passwordFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(passwordFile, []byte(k.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := secureSettings(k, config.SASLScramSHA256)
	in["AGGREGATOR_KAFKA_SASL_PASSWORD"] = k.Password
	in["AGGREGATOR_KAFKA_TOPIC"], in["AGGREGATOR_KAFKA_DLQ_TOPIC"] = s.topic, s.dlq
	addr := freeAddr(t)
	in["AGGREGATOR_ADDR"] = addr
	s.ingest = newProcess(t, s.logDir, "ingest", bin.ingest, serviceEnv(t, &config.Ingest{}, in), addr)

	addr = freeAddr(t)
	s.query = newProcess(t, s.logDir, "query", bin.query, s.queryEnv(addr), addr)
	procs := []*process{s.ingest, s.query}
	for i := range workers {
		w := secureSettings(k, config.SASLScramSHA512)
		w["AGGREGATOR_KAFKA_SASL_PASSWORD_FILE"] = passwordFile
		w["AGGREGATOR_KAFKA_TOPIC"], w["AGGREGATOR_KAFKA_DLQ_TOPIC"] = s.topic, s.dlq
		w["AGGREGATOR_KAFKA_GROUP"] = s.group
		w["AGGREGATOR_POSTGRES_URL"] = s.pgURL
		w["AGGREGATOR_REDIS_URL"] = s.redisURL
		addr := freeAddr(t)
		w["AGGREGATOR_ADDR"] = addr
		p := newProcess(t, s.logDir, "worker-"+strconv.Itoa(i+1), bin.worker, serviceEnv(t, &config.Worker{}, w), addr)
		s.workers = append(s.workers, p)
		procs = append(procs, p)
	}
	for _, p := range procs {
		p.start(t)
	}
	for _, p := range procs {
		p.waitReady(t, time.Minute)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range procs {
			t.Logf("---- %s: last lines of %s ----\n%s", p.name, p.log, tail(p.log, 40))
		}
	})
	return s
}

// TestSecureKafkaPipeline: the whole pipeline runs through TLS and SCRAM
// with a principal that has only the ACLs a deployment grants it, and the
// counts end exact. The password never reaches a log.
func TestSecureKafkaPipeline(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	k := testdeps.KafkaSecure(t)
	s := newSecureStack(t, k, 2)
	rep := s.mustPublish(t, ctx, "--events", "5000", "--duplicates", "0.2", "--topics", "5",
		"--batch", "250", "--concurrency", "4", "--settle-timeout", "60s")
	c := s.checkExact(t, ctx, rep, 0)
	if c.unique != 5000 {
		t.Fatalf("unique %d, want 5000", c.unique)
	}
	// Every stored event is readable (an event shows once every older
	// transaction of the Postgres server has ended, so a short read is
	// read again).
	var seen map[string]bool
	if !waitFor(ctx, 200*time.Millisecond, func() bool {
		seen = s.readAllEvents(t, ctx)
		return int64(len(seen)) == c.unique
	}) {
		t.Fatalf("GET /events returned %d events, unique_processed is %d", len(seen), c.unique)
	}
	for _, p := range append([]*process{s.ingest}, s.workers...) {
		b, err := os.ReadFile(p.log)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), k.Password) {
			t.Errorf("%s logged the SASL password", p.name)
		}
	}
}

// TestSecureKafkaRefused: a wrong password, an untrusted broker certificate,
// a missing topic (creation off) and a consumer group without an ACL each
// give one log line that names the cause, the service never reports ready,
// and it stays up (no crash loop).
func TestSecureKafkaRefused(t *testing.T) {
	k := testdeps.KafkaSecure(t)
	topic := testdeps.NewKafkaTopic(t, 1)
	dlq := testdeps.NewKafkaTopic(t, 1)
	testdeps.GrantKafkaACLs(t, k.Principal(), "", topic, dlq)
	group := "e2e-secure-" + randomHex(6)
	testdeps.GrantKafkaACLs(t, k.Principal(), group, topic, dlq)
	cases := []struct {
		name   string
		worker bool // the worker instead of the ingest
		set    map[string]string
		want   []string // substrings of the logged error
	}{
		{"wrong password", false, map[string]string{"AGGREGATOR_KAFKA_SASL_PASSWORD": "not-the-password"},
			[]string{"SASL Authentication Failed", "refused the SASL credentials"}},
		{"untrusted CA", false, map[string]string{"AGGREGATOR_KAFKA_TLS_CA_FILE": testdeps.OtherCAFile(t)},
			[]string{"certificate signed by unknown authority", "AGGREGATOR_KAFKA_TLS_CA_FILE"}},
		{"missing topic", false, map[string]string{"AGGREGATOR_KAFKA_DLQ_TOPIC": dlq + "-missing"},
			[]string{dlq + "-missing", "does not exist", "CREATE on the cluster or the topic"}},
		{"group without ACL", true, map[string]string{"AGGREGATOR_KAFKA_GROUP": group + "-other"},
			[]string{"Group Authorization Failed", group + "-other", "AGGREGATOR_KAFKA_GROUP"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			set := secureSettings(k, config.SASLScramSHA512)
			set["AGGREGATOR_KAFKA_SASL_PASSWORD"] = k.Password
			set["AGGREGATOR_KAFKA_TOPIC"], set["AGGREGATOR_KAFKA_DLQ_TOPIC"] = topic, dlq
			for name, v := range tc.set {
				set[name] = v
			}
			// Debug shows each retry, so the test can tell the cause was
			// logged once over several attempts.
			set["AGGREGATOR_LOG_LEVEL"] = "debug"
			addr := freeAddr(t)
			set["AGGREGATOR_ADDR"] = addr
			dir := logDir(t)
			var p *process
			if tc.worker {
				set["AGGREGATOR_POSTGRES_URL"] = testdeps.NewPostgresDB(t)
				set["AGGREGATOR_REDIS_URL"] = testdeps.RedisURL(t)
				p = newProcess(t, dir, "worker", bin.worker, serviceEnv(t, &config.Worker{}, set), addr)
			} else {
				p = newProcess(t, dir, "ingest", bin.ingest, serviceEnv(t, &config.Ingest{}, set), addr)
			}
			p.start(t)
			var errs []string
			if !waitFor(ctx, 100*time.Millisecond, func() bool {
				errs = loggedErrors(p.log, "waiting for kafka")
				return len(errs) > 0
			}) {
				t.Fatalf("no 'waiting for kafka' line within a minute; log:\n%s", tail(p.log, 30))
			}
			for _, w := range tc.want {
				if !strings.Contains(errs[0], w) {
					t.Errorf("logged error %q does not say %q", errs[0], w)
				}
			}
			// The service listens while it waits: /readyz answers 503 with
			// the same cause.
			for range 3 {
				ready, body := readyz(ctx, addr)
				if ready {
					t.Fatalf("/readyz answered 200 with %s", tc.name)
				}
				if !strings.Contains(body, tc.want[0]) {
					t.Errorf("/readyz says %q, want a 503 naming the cause %q", body, tc.want[0])
				}
			}
			if !p.running() {
				t.Fatalf("%s exited; log:\n%s", p.name, tail(p.log, 30))
			}
			if !waitFor(ctx, 100*time.Millisecond, func() bool { return len(loggedErrors(p.log, "still waiting for kafka")) >= 2 }) {
				t.Fatalf("fewer than 3 attempts within a minute; log:\n%s", tail(p.log, 30))
			}
			if n := len(loggedErrors(p.log, "waiting for kafka")); n != 1 {
				t.Errorf("the cause was logged %d times, want once", n)
			}
			if t.Failed() {
				t.Logf("log:\n%s", tail(p.log, 30))
			}
		})
	}
}

// loggedErrors returns the err attribute of each log line whose message is msg.
func loggedErrors(path, msg string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		var l struct{ Msg, Err string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == msg {
			out = append(out, l.Err)
		}
	}
	return out
}

// readyz asks the service for /readyz: ready, or the body of a 503 ("" when
// nothing listens).
func readyz(ctx context.Context, addr string) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return false, ""
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return false, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK, string(body)
}
