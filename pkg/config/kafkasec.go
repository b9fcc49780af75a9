package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/event-aggregator/event-aggregator/pkg/tlsconfig"
)

// SASL mechanisms the Kafka clients speak.
const (
	SASLNone        = "none"
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// KafkaSecurity configures how the Kafka clients (producer, consumer group,
// topic admin, dead-letter writer) reach a secured cluster, and whether they
// may create the topics.
type KafkaSecurity struct {
	TLS                   bool   `name:"kafka-tls" env:"AGGREGATOR_KAFKA_TLS" default:"false" help:"Connect to the Kafka brokers over TLS."`
	TLSCAFile             string `name:"kafka-tls-ca-file" env:"AGGREGATOR_KAFKA_TLS_CA_FILE" help:"PEM bundle of the CAs that sign the brokers' certificates (default: the system roots)."`
	TLSCertFile           string `name:"kafka-tls-cert-file" env:"AGGREGATOR_KAFKA_TLS_CERT_FILE" help:"Client certificate (PEM) for mutual TLS; needs --kafka-tls-key-file."`
	TLSKeyFile            string `name:"kafka-tls-key-file" env:"AGGREGATOR_KAFKA_TLS_KEY_FILE" help:"Client private key (PEM) for mutual TLS."`
	TLSServerName         string `name:"kafka-tls-server-name" env:"AGGREGATOR_KAFKA_TLS_SERVER_NAME" help:"Name the brokers' certificates must carry (default: the dialled host)."`
	TLSInsecureSkipVerify bool   `name:"kafka-tls-insecure-skip-verify" env:"AGGREGATOR_KAFKA_TLS_INSECURE_SKIP_VERIFY" default:"false" help:"Accept any broker certificate. For experiments only: it defeats TLS."`
	SASLMechanism         string `name:"kafka-sasl-mechanism" env:"AGGREGATOR_KAFKA_SASL_MECHANISM" default:"none" enum:"none,plain,scram-sha-256,scram-sha-512" help:"SASL mechanism (none, plain, scram-sha-256, scram-sha-512)."`
	SASLUsername          string `name:"kafka-sasl-username" env:"AGGREGATOR_KAFKA_SASL_USERNAME" help:"SASL user name."`
	SASLPassword          string `name:"kafka-sasl-password" env:"AGGREGATOR_KAFKA_SASL_PASSWORD" secret:"true" help:"SASL password; prefer --kafka-sasl-password-file."`
	SASLPasswordFile      string `name:"kafka-sasl-password-file" env:"AGGREGATOR_KAFKA_SASL_PASSWORD_FILE" help:"File holding the SASL password (a mounted Secret); wins over --kafka-sasl-password."`
	CreateTopics          bool   `name:"kafka-create-topics" env:"AGGREGATOR_KAFKA_CREATE_TOPICS" default:"true" negatable:"" help:"Create the topics when missing (needs CREATE on the cluster or the topics); when off, a missing topic keeps the service not ready."`
	MinInsyncReplicas     int    `name:"kafka-min-insync-replicas" env:"AGGREGATOR_KAFKA_MIN_INSYNC_REPLICAS" default:"0" help:"min.insync.replicas of the topics when they are created; 0: 2 when replicated, else 1."`
}

// TLSConfig is the client TLS configuration, nil when TLS is off.
func (k *KafkaSecurity) TLSConfig() (*tls.Config, error) {
	if !k.TLS {
		return nil, nil
	}
	cfg, err := tlsconfig.Files{
		CAFile:             k.TLSCAFile,
		CertFile:           k.TLSCertFile,
		KeyFile:            k.TLSKeyFile,
		ServerName:         k.TLSServerName,
		InsecureSkipVerify: k.TLSInsecureSkipVerify,
	}.Config()
	if err != nil {
		return nil, fmt.Errorf("kafka TLS: %w", err)
	}
	return cfg, nil
}

// Password is the SASL password: the file's content (one trailing newline
// dropped, as Secret files and echo leave one) when a file is set.
func (k *KafkaSecurity) Password() (string, error) {
	if k.SASLPasswordFile == "" {
		return k.SASLPassword, nil
	}
	b, err := os.ReadFile(k.SASLPasswordFile)
	if err != nil {
		return "", fmt.Errorf("kafka SASL password: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("kafka SASL password file %s is empty", k.SASLPasswordFile)
	}
	return pw, nil
}

func (k *KafkaSecurity) validate() error {
	var errs []error
	if k.SASLMechanism != SASLNone && k.SASLMechanism != "" {
		if k.SASLUsername == "" {
			errs = append(errs, fmt.Errorf("--kafka-sasl-mechanism %s needs --kafka-sasl-username", k.SASLMechanism))
		}
		if k.SASLPassword == "" && k.SASLPasswordFile == "" {
			errs = append(errs, fmt.Errorf("--kafka-sasl-mechanism %s needs --kafka-sasl-password or --kafka-sasl-password-file", k.SASLMechanism))
		}
	}
	if !k.TLS && (k.TLSCAFile != "" || k.TLSCertFile != "" || k.TLSKeyFile != "" || k.TLSServerName != "" || k.TLSInsecureSkipVerify) {
		errs = append(errs, errors.New("--kafka-tls-* files and options need --kafka-tls"))
	}
	if (k.TLSCertFile == "") != (k.TLSKeyFile == "") {
		errs = append(errs, errors.New("--kafka-tls-cert-file and --kafka-tls-key-file must be given together"))
	}
	if k.MinInsyncReplicas < 0 {
		errs = append(errs, errors.New("--kafka-min-insync-replicas must not be negative"))
	}
	return errors.Join(errs...)
}
