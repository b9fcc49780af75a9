// Package console serves the web console: one HTML page and its script and
// style, embedded in the binary (no CDN, no build step), and GET
// /console/info, the facts the page shows besides the API's counters: the
// retention and dedup window in force, the store's size and, in the
// distributed mode, the consumer lag the workers report.
package console

import (
	"context"
	"embed"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/problem"
)

//go:embed assets
var assets embed.FS

// Modes of the binary serving the console.
const (
	AllInOne    = "all-in-one"
	Distributed = "distributed"
)

// Sizer reports the store's size: the events alive and the bytes on disk
// (the same figures GET /stats shows).
type Sizer interface {
	Size(ctx context.Context) (events, bytes int64, err error)
}

// Options describe the binary the console runs in.
type Options struct {
	Mode   string // AllInOne or Distributed
	Engine string // the store's engine: sqlite, pebble or postgres
	Store  Sizer
	// Retention is how long events are kept; 0 is forever.
	Retention time.Duration
	// RetentionTopics overrides Retention per topic.
	RetentionTopics map[string]time.Duration
	// DedupWindow is how long the key of a stored event keeps a late copy a
	// duplicate; 0 is forever.
	DedupWindow time.Duration
	// WorkerMetrics are the /metrics URLs of the workers, whose
	// aggregator_kafka_consumer_lag gauges make the lag table. A URL
	// starting with "dns+" stands for every address its host resolves to.
	WorkerMetrics []string
	Client        *http.Client // for WorkerMetrics; nil is a 2 s client
	// LookupHost resolves the "dns+" names; nil is the system resolver.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	Log        *slog.Logger
}

// Console serves the page and its info.
type Console struct {
	o Options
}

// New returns the console of a binary.
func New(o Options) *Console {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 2 * time.Second}
	}
	if o.LookupHost == nil {
		o.LookupHost = net.DefaultResolver.LookupHost
	}
	if o.Mode == "" {
		o.Mode = AllInOne
	}
	return &Console{o: o}
}

// Info is the body of GET /console/info.
type Info struct {
	Mode            string            `json:"mode"`
	Engine          string            `json:"engine"`
	Retention       string            `json:"retention"`
	RetentionTopics map[string]string `json:"retention_topics"`
	DedupWindow     string            `json:"dedup_window"`
	StoreBytes      int64             `json:"store_bytes"`
	ConsumerLag     *Lag              `json:"consumer_lag,omitempty"`
}

// period spells a duration for people and scripts: "forever" or Go's form.
func period(d time.Duration) string {
	if d <= 0 {
		return "forever"
	}
	return d.String()
}

// Info serves GET /console/info. A key limited to some topics sees the
// retention overrides of those topics only.
func (c *Console) Info(w http.ResponseWriter, r *http.Request) {
	_, size, err := c.o.Store.Size(r.Context())
	if err != nil {
		c.o.Log.WarnContext(r.Context(), "read failed", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "1")
		problem.Write(w, http.StatusServiceUnavailable, "the store cannot be read now; retry", nil)
		return
	}
	g := auth.FromContext(r.Context())
	info := Info{
		Mode:            c.o.Mode,
		Engine:          c.o.Engine,
		Retention:       period(c.o.Retention),
		RetentionTopics: map[string]string{},
		DedupWindow:     period(c.o.DedupWindow),
		StoreBytes:      size,
	}
	for t, d := range c.o.RetentionTopics {
		if g.Topic(t) {
			info.RetentionTopics[t] = period(d)
		}
	}
	if c.o.Mode == Distributed && len(c.o.WorkerMetrics) > 0 {
		info.ConsumerLag = c.lag(r.Context())
	}
	writeJSON(w, info)
}
