package config

// The per-binary configurations. Each binary parses one of these with kong;
// the deployment artifacts are tested against their env names.

// Ports each binary listens on by default.
const (
	IngestAddr     = ":8080"
	QueryAddr      = ":8081"
	WorkerAddr     = ":8082"
	AggregatorAddr = ":8080"
)

// Aggregator is the all-in-one binary: ingest, processing and query in one
// process over an embedded store.
type Aggregator struct {
	HTTP     `embed:""`
	Limits   `embed:""`
	Log      `embed:""`
	Memory   `embed:""`
	Shutdown `embed:""`
	DataDir  string `name:"data-dir" env:"AGGREGATOR_DATA_DIR" default:"./data" help:"Directory of the store's files."`
	Store    string `name:"store" env:"AGGREGATOR_STORE" default:"auto" enum:"auto,sqlite,pebble" help:"Embedded store: auto (the engine of the store already in --data-dir; pebble for a new one), pebble (an LSM in pebble/, made for random-key ingest) or sqlite (one file, events.db)."`
	Sync     string `name:"sync" env:"AGGREGATOR_SYNC" default:"normal" enum:"normal,full" help:"Durability of a commit: normal survives any process crash (kill -9); full also survives power loss, with a disk flush per commit."`

	KeysFile  `embed:""`
	RateLimit `embed:""`

	Retention `embed:""`
}

// Ingest accepts events over HTTP and produces them to Kafka.
type Ingest struct {
	HTTP     `embed:""`
	Limits   `embed:""`
	Log      `embed:""`
	Kafka    `embed:""`
	Shutdown `embed:""`

	KeysFile  `embed:""`
	RateLimit `embed:""`
}

// Worker consumes events from Kafka, claims them in Redis and stores them in
// Postgres. Its HTTP server serves probes and metrics only.
type Worker struct {
	HTTP     `embed:""`
	Log      `embed:""`
	Kafka    `embed:""`
	Consumer `embed:""`
	Postgres `embed:""`
	Redis    `embed:""`
	Shutdown `embed:""`
	PGBounds `embed:""`
	RedisTLS `embed:""`

	Retention `embed:""`
}

// Query serves the stored events and counters from Postgres.
type Query struct {
	HTTP     `embed:""`
	Log      `embed:""`
	Postgres `embed:""`
	Shutdown `embed:""`
	PGBounds `embed:""`

	KeysFile `embed:""`
	Console  `embed:""`

	Retention `embed:""`
}
