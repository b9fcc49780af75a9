package config

import (
	"errors"
	"math"
)

// KeysFile names the key file of scoped API keys.
type KeysFile struct {
	APIKeysFile string `name:"api-keys-file" env:"AGGREGATOR_API_KEYS_FILE" help:"JSON file of API keys with scopes (publish, read, both) and topic prefixes; read again within seconds of a change. Adds to --api-keys."`
}

// RateLimit bounds how fast each API key may publish.
type RateLimit struct {
	PublishRate  float64 `name:"rate-limit" env:"AGGREGATOR_RATE_LIMIT" default:"0" help:"Events per second each API key may publish (token bucket; 0 = no limit). Past it /publish answers 429 with Retry-After."`
	PublishBurst int     `name:"rate-burst" env:"AGGREGATOR_RATE_BURST" default:"0" help:"Most events a key may publish at once (0 = one second of --rate-limit); a larger request gets 413."`
}

func (c *RateLimit) validate() error {
	var errs []error
	if c.PublishRate < 0 || math.IsNaN(c.PublishRate) || math.IsInf(c.PublishRate, 0) {
		errs = append(errs, errors.New("--rate-limit must be a finite number ≥ 0"))
	}
	if c.PublishBurst < 0 {
		errs = append(errs, errors.New("--rate-burst must be ≥ 0"))
	}
	return errors.Join(errs...)
}
