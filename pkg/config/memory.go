package config

import (
	"errors"
)

// Memory bounds what the all-in-one keeps in memory. The defaults fit a small
// VM at any store size; larger values trade memory for speed on big stores.
type Memory struct {
	SQLiteCacheMB    int `name:"sqlite-cache-mb" env:"AGGREGATOR_SQLITE_CACHE_MB" default:"32" help:"SQLite page cache of the writer, in MiB (the readers keep 4 MiB each)."`
	SQLiteMmapMB     int `name:"sqlite-mmap-mb" env:"AGGREGATOR_SQLITE_MMAP_MB" default:"0" help:"Memory-mapped reads per SQLite connection, in MiB; mapped pages count as resident memory (0: off)."`
	PebbleCacheMB    int `name:"pebble-cache-mb" env:"AGGREGATOR_PEBBLE_CACHE_MB" default:"48" help:"Pebble store: block cache in MiB, memtables included (--store pebble)."`
	PebbleMemtableMB int `name:"pebble-memtable-mb" env:"AGGREGATOR_PEBBLE_MEMTABLE_MB" default:"16" help:"Pebble store: size of one memtable in MiB; up to two are in memory, counted in the cache (--store pebble)."`
	PebbleFilterMB   int `name:"pebble-filter-mb" env:"AGGREGATOR_PEBBLE_FILTER_MB" default:"16" help:"Pebble store: most memory, in MiB, of the in-memory filter that rules out new event keys before a lookup; 2.4 bytes per stored event up to that (0: no filter) (--store pebble)."`
	HeapLimitMB      int `name:"heap-limit-mb" env:"AGGREGATOR_HEAP_LIMIT_MB" default:"128" help:"Soft limit of the Go heap in MiB when GOMEMLIMIT is not set (0: none); GOMEMLIMIT wins when set."`
	ClaimCacheKeys   int `name:"claim-cache-keys" env:"AGGREGATOR_CLAIM_CACHE_KEYS" default:"65536" help:"Event keys the in-memory claimer remembers to drop duplicates without asking the store; older keys are still deduplicated by the store."`
}

func (c *Memory) validate() error {
	var errs []error
	if c.SQLiteCacheMB < 1 || c.SQLiteMmapMB < 0 || c.HeapLimitMB < 0 {
		errs = append(errs, errors.New("--sqlite-cache-mb must be positive, --sqlite-mmap-mb and --heap-limit-mb not negative"))
	}
	if c.PebbleMemtableMB < 1 || c.PebbleCacheMB < 2*c.PebbleMemtableMB+8 {
		errs = append(errs, errors.New("--pebble-memtable-mb must be positive and --pebble-cache-mb at least twice it plus 8"))
	}
	if c.PebbleFilterMB < 0 {
		errs = append(errs, errors.New("--pebble-filter-mb must not be negative"))
	}
	if c.ClaimCacheKeys < 1 {
		errs = append(errs, errors.New("--claim-cache-keys must be positive"))
	}
	return errors.Join(errs...)
}
