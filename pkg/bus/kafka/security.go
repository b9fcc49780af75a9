package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	fsasl "github.com/twmb/franz-go/pkg/sasl"
	fplain "github.com/twmb/franz-go/pkg/sasl/plain"
	fscram "github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/event-aggregator/event-aggregator/pkg/config"
)

// clientID names this service to the brokers (quotas, request logs).
const clientID = "event-aggregator"

// dialTimeout bounds one connection: TCP, TLS handshake and SASL exchange.
const dialTimeout = 10 * time.Second

// Security is how every Kafka client of a process connects: TLS (nil: plain
// TCP) and a SASL mechanism (nil: none). The zero value is an unsecured
// connection, as to a local broker.
type Security struct {
	TLS  *tls.Config
	SASL sasl.Mechanism
	// producerSASL is the same mechanism for the producer's client
	// (franz-go), nil without SASL.
	producerSASL fsasl.Mechanism
}

// NewSecurity returns the Security of a SASL mechanism ("none", "plain",
// "scram-sha-256", "scram-sha-512", as in config) with its credentials,
// over TLS when tlsCfg is not nil.
func NewSecurity(tlsCfg *tls.Config, mechanism, username, password string) (Security, error) {
	s := Security{TLS: tlsCfg}
	var err error
	switch strings.ToLower(mechanism) {
	case "", config.SASLNone:
	case config.SASLPlain:
		s.SASL = plain.Mechanism{Username: username, Password: password}
		s.producerSASL = fplain.Auth{User: username, Pass: password}.AsMechanism()
	case config.SASLScramSHA256:
		s.SASL, err = scram.Mechanism(scram.SHA256, username, password)
		s.producerSASL = fscram.Auth{User: username, Pass: password}.AsSha256Mechanism()
	case config.SASLScramSHA512:
		s.SASL, err = scram.Mechanism(scram.SHA512, username, password)
		s.producerSASL = fscram.Auth{User: username, Pass: password}.AsSha512Mechanism()
	default:
		return Security{}, fmt.Errorf("kafka SASL mechanism %q: want none, plain, scram-sha-256 or scram-sha-512", mechanism)
	}
	if err != nil {
		return Security{}, fmt.Errorf("kafka SASL %s: %w", mechanism, err)
	}
	return s, nil
}

// SecurityFromConfig builds the Security the settings describe: the TLS
// files are read and the password file is read now, so a wrong mount fails
// at start with the file named.
func SecurityFromConfig(c *config.KafkaSecurity) (Security, error) {
	tlsCfg, err := c.TLSConfig()
	if err != nil {
		return Security{}, err
	}
	password, err := c.Password()
	if err != nil {
		return Security{}, err
	}
	return NewSecurity(tlsCfg, c.SASLMechanism, c.SASLUsername, password)
}

// transport returns a Transport of its own (closing it closes only its
// connections) that connects with s.
func (s Security) transport() *kafka.Transport {
	return &kafka.Transport{ClientID: clientID, DialTimeout: dialTimeout, TLS: s.TLS, SASL: s.SASL}
}

// dialer returns a Dialer that connects with s, for the consumer group, the
// partition readers and the leader connections.
func (s Security) dialer() *kafka.Dialer {
	return &kafka.Dialer{ClientID: clientID, Timeout: dialTimeout, DualStack: true, TLS: s.TLS, SASLMechanism: s.SASL}
}

// producerOpts are the connection options of the producer's client.
func (s Security) producerOpts() []kgo.Opt {
	opts := []kgo.Opt{kgo.ClientID(clientID), kgo.DialTimeout(dialTimeout)}
	if s.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(s.TLS.Clone()))
	}
	if s.producerSASL != nil {
		opts = append(opts, kgo.SASL(s.producerSASL))
	}
	return opts
}

// describe names the connection for error messages, e.g. "SASL_SSL
// (SCRAM-SHA-512)".
func (s Security) describe() string {
	proto := "PLAINTEXT"
	switch {
	case s.TLS != nil && s.SASL != nil:
		proto = "SASL_SSL"
	case s.TLS != nil:
		proto = "SSL"
	case s.SASL != nil:
		proto = "SASL_PLAINTEXT"
	}
	if s.SASL != nil {
		proto += " (" + s.SASL.Name() + ")"
	}
	return proto
}

// explain adds to a connection error what an operator should check: the
// causes of a secured connection failing look alike in the client library
// (EOF, a reset) unless they are told apart here.
func (s Security) explain(err error) error {
	if err == nil {
		return nil
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
	)
	hint := ""
	switch {
	case errors.Is(err, kafka.SASLAuthenticationFailed), errors.Is(err, kerr.SaslAuthenticationFailed):
		hint = "the brokers refused the SASL credentials: check AGGREGATOR_KAFKA_SASL_USERNAME, the password and AGGREGATOR_KAFKA_SASL_MECHANISM"
	case errors.Is(err, kafka.UnsupportedSASLMechanism), errors.Is(err, kafka.IllegalSASLState),
		errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.IllegalSaslState):
		hint = "the brokers do not offer this SASL mechanism on this listener: check AGGREGATOR_KAFKA_SASL_MECHANISM"
	case errors.As(err, &unknownCA):
		hint = "the brokers' certificate is not signed by a trusted CA: set AGGREGATOR_KAFKA_TLS_CA_FILE to the CA bundle that signed it"
	case errors.As(err, &hostname):
		hint = "the brokers' certificate does not name the dialled host: check the broker addresses or set AGGREGATOR_KAFKA_TLS_SERVER_NAME"
	case errors.As(err, &invalid), errors.As(err, &verify):
		hint = "the brokers' certificate failed verification: check AGGREGATOR_KAFKA_TLS_CA_FILE and the certificate's dates"
	case errors.As(err, &header):
		hint = "the listener does not speak TLS: unset AGGREGATOR_KAFKA_TLS or use the brokers' TLS port"
	case closed(err) && s.TLS == nil:
		hint = "the connection was closed at once: if the listener expects TLS, set AGGREGATOR_KAFKA_TLS=true"
	case closed(err):
		// A PLAINTEXT listener reads the TLS hello as a malformed request
		// and hangs up.
		hint = "the connection was closed during the TLS handshake: the listener may not speak TLS; unset AGGREGATOR_KAFKA_TLS or use the brokers' TLS port"
	case errors.Is(err, kafka.TopicAuthorizationFailed), errors.Is(err, kerr.TopicAuthorizationFailed):
		hint = "this principal lacks an ACL on a topic: it needs DESCRIBE, READ (worker) and WRITE (ingest, dead letters) on the topics"
	case errors.Is(err, kafka.GroupAuthorizationFailed):
		hint = "this principal lacks READ on the consumer group (AGGREGATOR_KAFKA_GROUP)"
	case errors.Is(err, kafka.ClusterAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		hint = "this principal lacks a cluster ACL for this request"
	}
	if hint == "" {
		return fmt.Errorf("kafka over %s: %w", s.describe(), err)
	}
	return fmt.Errorf("kafka over %s: %w (%s)", s.describe(), err, hint)
}

// closed reports whether err is the peer hanging up.
func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "connection reset")
}
