package main

import (
	"io"
	"time"

	"github.com/alecthomas/kong"

	"github.com/event-aggregator/event-aggregator/services/publisher/internal/loadgen"
)

// cli is the command line; every flag can also come from its PUBLISHER_* variable.
type cli struct {
	URL           string        `name:"url" env:"PUBLISHER_URL" default:"http://127.0.0.1:8080" help:"Ingest base URL; events go to POST <url>/publish."`
	QueryURL      string        `name:"query-url" env:"PUBLISHER_QUERY_URL" placeholder:"URL" help:"Base URL where GET /stats is read (default: --url)."`
	Events        int           `name:"events" env:"PUBLISHER_EVENTS" default:"10000" help:"Distinct events to publish."`
	Topics        int           `name:"topics" env:"PUBLISHER_TOPICS" default:"10" help:"Spread events over this many topics (topic-0 …)."`
	Duplicates    float64       `name:"duplicates" env:"PUBLISHER_DUPLICATES" default:"0.2" help:"Share of all sent events that are re-sends of already-sent events (0.2: 20%)."`
	Batch         int           `name:"batch" env:"PUBLISHER_BATCH" default:"100" help:"Events per request; 1 sends a single event object per request."`
	Concurrency   int           `name:"concurrency" env:"PUBLISHER_CONCURRENCY" default:"8" help:"Requests in flight."`
	Rate          float64       `name:"rate" env:"PUBLISHER_RATE" default:"0" help:"Target events per second; 0 is unlimited."`
	OpenLoop      bool          `name:"open-loop" env:"PUBLISHER_OPEN_LOOP" help:"With --rate: keep to the schedule whatever the answers and count each request's latency from when it was due, so waiting for a free client (up to --concurrency in flight) is counted too."`
	IDs           string        `name:"ids" env:"PUBLISHER_IDS" enum:"sequential,uuid" default:"sequential" help:"Event ids: sequential (<run-id>-<n>, almost in key order) or uuid (random UUIDv4 derived from the seed, run id and event number)."`
	Retries       int           `name:"retries" env:"PUBLISHER_RETRIES" default:"5" help:"Retries per request on 5xx, 429, timeouts and connection errors (exponential backoff with jitter; Retry-After honoured)."`
	Timeout       time.Duration `name:"timeout" env:"PUBLISHER_TIMEOUT" default:"10s" help:"Timeout of one HTTP request."`
	RunID         string        `name:"run-id" env:"PUBLISHER_RUN_ID" help:"Run id; sequential event ids are <run-id>-<n>, UUIDs are derived from it (default: random)."`
	PayloadBytes  int           `name:"payload-bytes" env:"PUBLISHER_PAYLOAD_BYTES" default:"64" help:"Approximate size of each event's payload."`
	APIKey        string        `name:"api-key" env:"PUBLISHER_API_KEY" help:"Sent as Authorization: Bearer <key>."`
	NDJSON        bool          `name:"ndjson" env:"PUBLISHER_NDJSON" help:"Send application/x-ndjson bodies instead of JSON arrays."`
	Verify        bool          `name:"verify" env:"PUBLISHER_VERIFY" default:"true" negatable:"" help:"Check /stats afterwards: unique_processed must grow by exactly the distinct events acknowledged. Assumes no other publisher writes meanwhile (default: on)."`
	SettleTimeout time.Duration `name:"settle-timeout" env:"PUBLISHER_SETTLE_TIMEOUT" default:"60s" help:"Longest wait for the counters after sending."`
	SettleQuiet   time.Duration `name:"settle-quiet" env:"PUBLISHER_SETTLE_QUIET" default:"2s" help:"Counters unchanged this long count as settled."`
	Seed          uint64        `name:"seed" env:"PUBLISHER_SEED" default:"0" help:"Seed of the send plan, to repeat a run's order (0: random)."`
	JSON          bool          `name:"json" env:"PUBLISHER_JSON" help:"Print the summary as one JSON object."`
	NoProgress    bool          `name:"no-progress" env:"PUBLISHER_NO_PROGRESS" help:"No progress bar (it is only drawn when stderr is a terminal)."`
}

const description = `Publishes distinct events plus re-sends of already-sent ones (soon after, inside the same
request, and late out of order) to an Event Aggregator, retrying like an at-least-once publisher,
then checks through GET /stats that each acknowledged event was stored exactly once.
Exit status: 0 ok, 1 verification failed or events unacknowledged, 2 usage.`

// parseArgs parses args into a cli. helped reports that --help was printed.
func parseArgs(args []string, stdout, stderr io.Writer) (c cli, helped bool, err error) {
	parser, err := kong.New(&c,
		kong.Name("publisher"),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(int) { helped = true }), // kong exits only after printing help
	)
	if err != nil {
		return c, false, err
	}
	_, err = parser.Parse(args)
	return c, helped, err
}

func (c *cli) config() loadgen.Config {
	return loadgen.Config{
		URL:           c.URL,
		QueryURL:      c.QueryURL,
		Events:        c.Events,
		Topics:        c.Topics,
		Duplicates:    c.Duplicates,
		Batch:         c.Batch,
		Concurrency:   c.Concurrency,
		Rate:          c.Rate,
		OpenLoop:      c.OpenLoop,
		IDs:           c.IDs,
		Retries:       c.Retries,
		Timeout:       c.Timeout,
		RunID:         c.RunID,
		PayloadBytes:  c.PayloadBytes,
		APIKey:        c.APIKey,
		NDJSON:        c.NDJSON,
		Seed:          c.Seed,
		Verify:        c.Verify,
		SettleTimeout: c.SettleTimeout,
		SettleQuiet:   c.SettleQuiet,
	}
}
