package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/console"
)

type sizer struct {
	n   int64
	err error
}

func (s sizer) Size(context.Context) (int64, int64, error) { return 0, s.n, s.err }

func info(t *testing.T, h http.Handler, key string) (int, console.Info) {
	t.Helper()
	req := httptest.NewRequest("GET", "/console/info", nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out console.Info
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("body %s: %v", rec.Body, err)
		}
	}
	return rec.Code, out
}

func TestInfoToday(t *testing.T) {
	c := console.New(console.Options{Engine: "pebble", Store: sizer{n: 12345}})
	code, got := info(t, http.HandlerFunc(c.Info), "")
	want := console.Info{Mode: console.AllInOne, Engine: "pebble", Retention: "forever", RetentionTopics: map[string]string{},
		DedupWindow: "forever", StoreBytes: 12345}
	if code != 200 || !reflect.DeepEqual(got, want) {
		t.Errorf("%d %+v, want %+v", code, got, want)
	}
}

// TestInfoRetentionOfTheKeysTopics: a key limited to some topics sees their
// overrides only.
func TestInfoRetentionOfTheKeysTopics(t *testing.T) {
	c := console.New(console.Options{Store: sizer{n: 1}, Retention: 72 * time.Hour, DedupWindow: 96 * time.Hour,
		RetentionTopics: map[string]time.Duration{"orders.eu": time.Hour, "clicks": 2 * time.Hour}})
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, []byte(`{"keys":[{"name":"dash","key":"dash-key-00000001","scope":"read","topics":["orders."]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := auth.LoadKeys(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	_, got := info(t, keys.Require(auth.Read, http.HandlerFunc(c.Info)), "dash-key-00000001")
	if got.Retention != "72h0m0s" || got.DedupWindow != "96h0m0s" ||
		!reflect.DeepEqual(got.RetentionTopics, map[string]string{"orders.eu": "1h0m0s"}) {
		t.Errorf("%+v", got)
	}
}

func TestInfoStoreUnreadable(t *testing.T) {
	c := console.New(console.Options{Store: sizer{err: errors.New("disk gone")}})
	rec := httptest.NewRecorder()
	c.Info(rec, httptest.NewRequest("GET", "/console/info", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != "application/problem+json" ||
		strings.Contains(rec.Body.String(), "disk gone") {
		t.Errorf("%d %q %s, want a 503 problem that leaks nothing", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
}

// TestLagFromTheWorkers: each partition's lag as the worker consuming it
// reports it; a worker that does not answer is named, not fatal.
func TestLagFromTheWorkers(t *testing.T) {
	worker := func(body string, status int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}))
		t.Cleanup(s.Close)
		return s
	}
	w1 := worker("# TYPE aggregator_kafka_consumer_lag gauge\n"+
		"aggregator_kafka_consumer_lag{partition=\"2\"} 7\naggregator_kafka_consumer_lag{partition=\"0\"} 0\n"+
		"# TYPE other gauge\nother 3\n", 200)
	w2 := worker("# TYPE aggregator_kafka_consumer_lag gauge\naggregator_kafka_consumer_lag{partition=\"1\"} 42\n"+
		"aggregator_kafka_consumer_lag{partition=\"2\"} 9\n", 200)
	broken := worker("oops", 500)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	c := console.New(console.Options{Mode: console.Distributed, Store: sizer{n: 1},
		WorkerMetrics: []string{w1.URL + "/metrics", w2.URL + "/metrics", broken.URL + "/metrics", down.URL + "/metrics"}})
	_, got := info(t, http.HandlerFunc(c.Info), "")
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	want := &console.Lag{
		Partitions: []console.PartitionLag{{Partition: 0, Lag: 0, Worker: host(w1)}, {Partition: 1, Lag: 42, Worker: host(w2)},
			{Partition: 2, Lag: 9, Worker: host(w2)}},
		Unreachable: []string{host(broken), host(down)},
	}
	if !reflect.DeepEqual(got.ConsumerLag, want) {
		t.Errorf("lag %+v, want %+v", got.ConsumerLag, want)
	}

	// The all-in-one has no workers: no lag at all.
	c = console.New(console.Options{Store: sizer{n: 1}, WorkerMetrics: []string{w1.URL}})
	if _, got := info(t, http.HandlerFunc(c.Info), ""); got.ConsumerLag != nil {
		t.Errorf("all-in-one lag %+v", got.ConsumerLag)
	}
}

// TestAssets: each file is served with its type and a policy that allows
// only the page's own files.
func TestAssets(t *testing.T) {
	c := console.New(console.Options{Store: sizer{}})
	for _, a := range []struct {
		h     http.HandlerFunc
		ctype string
		has   string
	}{
		{c.Page, "text/html; charset=utf-8", `<script src="/console/app.js"`},
		{c.Script, "text/javascript; charset=utf-8", "sessionStorage"},
		{c.Style, "text/css; charset=utf-8", "@media"},
	} {
		rec := httptest.NewRecorder()
		a.h(rec, httptest.NewRequest("GET", "/", nil))
		h := rec.Header()
		if rec.Code != 200 || h.Get("Content-Type") != a.ctype || !strings.Contains(rec.Body.String(), a.has) ||
			!strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d %v", a.ctype, rec.Code, h)
		}
	}
}

// TestLagThroughAName: a "dns+" URL reads every address its name resolves
// to, as a headless Service's name lists its pods.
func TestLagThroughAName(t *testing.T) {
	serve := func(addr, body string) net.Listener {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen %s: %v", addr, err)
		}
		s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("# TYPE aggregator_kafka_consumer_lag gauge\n" + body))
		})}
		go func() { _ = s.Serve(ln) }()
		t.Cleanup(func() { _ = s.Close() })
		return ln
	}
	// Two pods on one port, at two loopback addresses.
	first := serve("127.0.0.1:0", "aggregator_kafka_consumer_lag{partition=\"0\"} 5\n")
	port := first.Addr().(*net.TCPAddr).Port
	serve(net.JoinHostPort("127.0.0.2", strconv.Itoa(port)), "aggregator_kafka_consumer_lag{partition=\"1\"} 6\n")
	lookup := func(_ context.Context, host string) ([]string, error) {
		if host == "workers.test" {
			return []string{"127.0.0.2", "127.0.0.1"}, nil
		}
		return nil, errors.New("no such host")
	}
	c := console.New(console.Options{Mode: console.Distributed, Store: sizer{n: 1}, LookupHost: lookup,
		WorkerMetrics: []string{fmt.Sprintf("dns+http://workers.test:%d/metrics", port), "dns+http://gone.test:8082/metrics"}})
	_, got := info(t, http.HandlerFunc(c.Info), "")
	p := strconv.Itoa(port)
	want := &console.Lag{
		Partitions:  []console.PartitionLag{{Partition: 0, Lag: 5, Worker: "127.0.0.1:" + p}, {Partition: 1, Lag: 6, Worker: "127.0.0.2:" + p}},
		Unreachable: []string{"gone.test:8082"},
	}
	if !reflect.DeepEqual(got.ConsumerLag, want) {
		t.Errorf("lag %+v, want %+v", got.ConsumerLag, want)
	}
}
