package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec is a topic to create when missing.
type TopicSpec struct {
	Name              string
	Partitions        int               // default 12
	ReplicationFactor int               // default 1
	Configs           map[string]string // topic-level settings, e.g. retention.ms
}

// DefaultPartitions is the partition count of a TopicSpec that sets none.
const DefaultPartitions = 12

// metadataPoll is how often EnsureTopics looks for the created topics.
const metadataPoll = 100 * time.Millisecond

// metadataTTL is how long the topic client's transport keeps metadata. It
// also bounds each of its background metadata requests, so it must outlast a
// slow broker: a transport created per check fetches fresh metadata first
// anyway, and waits for the topics it creates.
const metadataTTL = 2 * time.Second

// ErrTopicMissing is wrapped by the error of a topic that does not exist
// (or that this principal may not see) when creating it is not allowed.
var ErrTopicMissing = errors.New("kafka topic missing")

// Topics checks, and when allowed creates, the topics a service needs,
// through an authenticated connection. It also serves as the readiness
// check: the handshake succeeds and every topic is there.
type Topics struct {
	brokers []string
	sec     Security
	specs   []TopicSpec
	create  bool
	group   string // consumer group the principal must reach; "" for none
}

// NewTopics returns the Topics of specs on brokers. With create false a
// missing topic is an error naming it and the permission needed.
func NewTopics(brokers []string, sec Security, create bool, specs ...TopicSpec) (*Topics, error) {
	if len(brokers) == 0 {
		return nil, errors.New("kafka topics: no brokers")
	}
	for _, s := range specs {
		if s.Name == "" {
			return nil, errors.New("kafka topics: empty topic name")
		}
	}
	return &Topics{brokers: brokers, sec: sec, specs: specs, create: create}, nil
}

// open returns a client on a transport of its own, and its closer. Each
// check connects anew: a readiness probe then proves the handshake still
// succeeds, sees topics created since, and no idle transport refreshes
// metadata in the background.
func (t *Topics) open() (*kafka.Client, func()) {
	tr := t.sec.transport()
	tr.MetadataTTL = metadataTTL
	return &kafka.Client{Addr: kafka.TCP(t.brokers...), Transport: tr}, tr.CloseIdleConnections
}

// RequireGroup adds the consumer group to what Ensure and Ready check: a
// principal without an ACL on it could never join, and would idle while
// looking ready.
func (t *Topics) RequireGroup(group string) { t.group = group }

// EnsureTopics creates the topics that do not exist and returns once the
// cluster's metadata shows every one of them with a leader for each
// partition. It is idempotent and safe to run from many processes at once.
// An existing topic is left as it is, whatever its partition count.
func EnsureTopics(ctx context.Context, brokers []string, topics ...TopicSpec) error {
	t, err := NewTopics(brokers, Security{}, true, topics...)
	if err != nil {
		return err
	}
	return t.Ensure(ctx)
}

// Ensure makes sure every topic exists with a leader on each partition:
// it creates the missing ones when allowed, and otherwise returns an error
// wrapping ErrTopicMissing that names them and the permission needed.
func (t *Topics) Ensure(ctx context.Context) error {
	client, done := t.open()
	defer done()
	missing, err := t.missing(ctx, client)
	if err != nil {
		return err
	}
	if len(missing) > 0 && !t.create {
		return t.missingError(missing)
	}
	if len(missing) > 0 {
		if err := t.createTopics(ctx, client, missing); err != nil {
			return err
		}
	}
	if err := t.sec.explain(waitTopics(ctx, client, t.names())); err != nil {
		return err
	}
	return t.groupAccess(ctx, client)
}

// Ready is the readiness check: an authenticated metadata round trip that
// shows every topic. It never creates one.
func (t *Topics) Ready(ctx context.Context) error {
	client, done := t.open()
	defer done()
	missing, err := t.missing(ctx, client)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return t.missingError(missing)
	}
	return t.groupAccess(ctx, client)
}

// groupAccess describes the consumer group, which needs an ACL on it. (Its
// READ, which joining needs, implies DESCRIBE: a principal with DESCRIBE
// alone passes here and fails to join.)
func (t *Topics) groupAccess(ctx context.Context, client *kafka.Client) error {
	if t.group == "" {
		return nil
	}
	res, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{t.group}})
	if err == nil {
		for _, g := range res.Groups {
			if g.Error != nil {
				err = g.Error
				break
			}
		}
	}
	if err != nil {
		return t.sec.explain(fmt.Errorf("consumer group %s: %w", t.group, err))
	}
	return nil
}

func (t *Topics) names() []string {
	names := make([]string, len(t.specs))
	for i, s := range t.specs {
		names[i] = s.Name
	}
	return names
}

// missing returns the specs whose topic the metadata does not show. A topic
// this principal may not DESCRIBE is left out of the metadata by the
// brokers, so it looks missing too.
func (t *Topics) missing(ctx context.Context, client *kafka.Client) ([]TopicSpec, error) {
	if len(t.specs) == 0 {
		return nil, nil
	}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: t.names()})
	if err != nil {
		return nil, t.sec.explain(fmt.Errorf("metadata from %v: %w", t.brokers, err))
	}
	found := make(map[string]kafka.Topic, len(md.Topics))
	for _, tp := range md.Topics {
		found[tp.Name] = tp
	}
	var missing []TopicSpec
	for _, s := range t.specs {
		tp, ok := found[s.Name]
		switch {
		case !ok, errors.Is(tp.Error, kafka.UnknownTopicOrPartition):
			missing = append(missing, s)
		case tp.Error != nil:
			return nil, t.sec.explain(fmt.Errorf("topic %s: %w", s.Name, tp.Error))
		}
	}
	return missing, nil
}

func (t *Topics) missingError(missing []TopicSpec) error {
	names := make([]string, len(missing))
	for i, s := range missing {
		names[i] = s.Name
	}
	return fmt.Errorf("%w: %v does not exist, or this principal lacks DESCRIBE on it; "+
		"create it, or grant CREATE on the cluster or the topic and set AGGREGATOR_KAFKA_CREATE_TOPICS=true",
		ErrTopicMissing, names)
}

func (t *Topics) createTopics(ctx context.Context, client *kafka.Client, specs []TopicSpec) error {
	req := &kafka.CreateTopicsRequest{}
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		tc := kafka.TopicConfig{
			Topic:             s.Name,
			NumPartitions:     orDefault(s.Partitions, DefaultPartitions),
			ReplicationFactor: orDefault(s.ReplicationFactor, 1),
		}
		for k, v := range s.Configs {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, tc)
		names = append(names, s.Name)
	}
	res, err := client.CreateTopics(ctx, req)
	if err != nil {
		return t.sec.explain(fmt.Errorf("create topics %v: %w", names, err))
	}
	for _, name := range slices.Sorted(maps.Keys(res.Errors)) {
		err := res.Errors[name]
		switch {
		case err == nil, errors.Is(err, kafka.TopicAlreadyExists):
		case errors.Is(err, kafka.TopicAuthorizationFailed), errors.Is(err, kafka.ClusterAuthorizationFailed):
			return fmt.Errorf("create topic %s: %w (this principal needs CREATE on the cluster or on the topic; "+
				"or create the topic beforehand and set AGGREGATOR_KAFKA_CREATE_TOPICS=false)", name, err)
		default:
			return t.sec.explain(fmt.Errorf("create topic %s: %w", name, err))
		}
	}
	return nil
}

// waitTopics polls metadata until every topic has a leader on each partition.
func waitTopics(ctx context.Context, client *kafka.Client, names []string) error {
	tick := time.NewTicker(metadataPoll)
	defer tick.Stop()
	var last error
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil {
			last = topicsReady(md, names)
			if last == nil {
				return nil
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for topics %v: %w (last: %w)", names, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func topicsReady(md *kafka.MetadataResponse, names []string) error {
	found := make(map[string]kafka.Topic, len(md.Topics))
	for _, t := range md.Topics {
		found[t.Name] = t
	}
	for _, name := range names {
		t, ok := found[name]
		switch {
		case !ok:
			return fmt.Errorf("topic %s not in metadata", name)
		case t.Error != nil:
			return fmt.Errorf("topic %s: %w", name, t.Error)
		case len(t.Partitions) == 0:
			return fmt.Errorf("topic %s has no partitions yet", name)
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return fmt.Errorf("topic %s partition %d has no leader yet", name, p.ID)
			}
		}
	}
	return nil
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}
