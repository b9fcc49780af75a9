package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/retention"
)

// Retention bounds how long the store keeps events and the keys of deleted
// events. Zero durations are forever. The store's dedup window is its own
// setting: AGGREGATOR_DEDUP_WINDOW is how long Redis caches a "done" verdict
// and may never outlast it (Worker.Validate).
type Retention struct {
	Retention         time.Duration `name:"retention" env:"AGGREGATOR_RETENTION" default:"0s" help:"How long stored events are kept, counted from when they were stored (0: forever)."`
	RetentionTopics   string        `name:"retention-topics" env:"AGGREGATOR_RETENTION_TOPICS" default:"" help:"Per-topic retention overrides, e.g. 'orders=720h,audit=0' (0: forever)."`
	StoreDedupWindow  time.Duration `name:"store-dedup-window" env:"AGGREGATOR_STORE_DEDUP_WINDOW" default:"0s" help:"How long the key of a deleted event is remembered, counted from when it was stored, so a late copy still counts as a duplicate (0: forever); never shorter than a retention period."`
	RetentionInterval time.Duration `name:"retention-interval" env:"AGGREGATOR_RETENTION_INTERVAL" default:"1m" help:"How often expired events are looked for."`
	RetentionBatch    int           `name:"retention-batch" env:"AGGREGATOR_RETENTION_BATCH" default:"1000" help:"Most events deleted in one transaction."`
}

// Policy returns the retention policy the settings describe; call it after
// Validate.
func (c *Retention) Policy() retention.Policy {
	topics, _ := parseTopics(c.RetentionTopics)
	return retention.Policy{Default: c.Retention, Topics: topics, DedupWindow: c.StoreDedupWindow}
}

// parseTopics reads "topic=duration,...". A topic may hold '=' (the last one
// splits) but not ','; spaces around an item are ignored.
func parseTopics(s string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		i := strings.LastIndexByte(item, '=')
		if i <= 0 {
			return nil, fmt.Errorf("--retention-topics: %q is not topic=duration", item)
		}
		topic := item[:i]
		d, err := time.ParseDuration(item[i+1:])
		if err != nil || d < 0 {
			return nil, fmt.Errorf("--retention-topics: %q: want a duration >= 0 such as 720h", item)
		}
		if _, dup := out[topic]; dup {
			return nil, fmt.Errorf("--retention-topics: topic %q named twice", topic)
		}
		out[topic] = d
	}
	return out, nil
}

func (c *Retention) validate() error {
	var errs []error
	if c.Retention < 0 || c.StoreDedupWindow < 0 {
		errs = append(errs, errors.New("--retention and --store-dedup-window must not be negative"))
	}
	if c.RetentionInterval <= 0 {
		errs = append(errs, errors.New("--retention-interval must be positive"))
	}
	if c.RetentionBatch < 1 || c.RetentionBatch > 100_000 {
		errs = append(errs, errors.New("--retention-batch must be from 1 to 100000"))
	}
	topics, err := parseTopics(c.RetentionTopics)
	if err != nil {
		errs = append(errs, err)
	}
	// A window shorter than a retention period would forget the key of an
	// event still stored, or promise to remember what retention keeps anyway
	// forever: refuse both.
	if w := c.StoreDedupWindow; w > 0 {
		check := func(what string, d time.Duration) {
			if d == 0 || d > w {
				errs = append(errs, fmt.Errorf("--store-dedup-window %s is shorter than %s %s", w, what, forever(d)))
			}
		}
		check("--retention", c.Retention)
		for topic, d := range topics {
			check(fmt.Sprintf("the retention of topic %q", topic), d)
		}
	}
	return errors.Join(errs...)
}

func forever(d time.Duration) string {
	if d == 0 {
		return "(forever)"
	}
	return d.String()
}
