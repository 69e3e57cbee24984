package kafka

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/dev/devbroker"
)

func noGroupYAML(seeds []string, topics string, extra string) string {
	return fmt.Sprintf(`
kafka_franz:
  seed_brokers: [ %q ]
  topics: %s
  fetch_max_wait: 100ms
%s`, strings.Join(seeds, ","), topics, extra)
}

// TestKafkaFranzInputExplicitPartitions reads partitions 1 to 2 of a four-partition topic,
// without a consumer group, partition 2 from an explicit start offset: exactly those records
// arrive, and nothing is committed anywhere.
func TestKafkaFranzInputExplicitPartitions(t *testing.T) {
	const (
		topic = "explicit"
		parts = 4
		n     = 40 // ten per partition
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: parts})
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, parts, 0, n)

	var c collector
	stop := runStream(t, noGroupYAML(b.SeedBrokers(), `[ "explicit:1-2" ]`, `  start_offsets: [ "explicit:2:4" ]`+"\n"), &c)
	eventually(t, "the records of partitions 1 and 2", func() bool { return len(c.snapshot()) >= 10+6 })
	stop()
	perPartition := map[int]int{}
	for _, d := range c.snapshot() {
		perPartition[d.partition]++
		if d.partition == 2 && d.offset < 4 {
			t.Errorf("partition 2 delivered offset %d, before its start offset 4", d.offset)
		}
	}
	if perPartition[1] != 10 || perPartition[2] != 6 || len(perPartition) != 2 {
		t.Errorf("records per partition %v, want 10 of partition 1 and 6 of partition 2, none of others", perPartition)
	}
}

// TestKafkaFranzInputNoGroup reads a whole topic without a consumer group.
func TestKafkaFranzInputNoGroup(t *testing.T) {
	const (
		topic = "nogroup"
		n     = 30
	)
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 3})
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, 3, 0, n)
	var c collector
	stop := runStream(t, noGroupYAML(b.SeedBrokers(), `[ nogroup ]`, ""), &c)
	eventually(t, "every record", func() bool { return len(c.snapshot()) >= n })
	stop()
	if keys := c.uniqueKeys(); len(keys) != n {
		t.Errorf("%d distinct records, want %d", len(keys), n)
	}
}

// TestKafkaFranzInputExplicitPartitionMissing names a topic and a partition that do not exist:
// Connect fails with a reason naming them instead of waiting for ever.
func TestKafkaFranzInputExplicitPartitionMissing(t *testing.T) {
	b := startBroker(t, devbroker.Options{Topics: []string{"present"}, Partitions: 2})
	for entry, want := range map[string]string{
		"absent:0":  `topic "absent" of field topics does not exist`,
		"present:5": `topic "present" has 2 partitions, so partition 5 of field topics does not exist`,
	} {
		conf, err := kafkaFranzInputSpec().ParseYAML(noGroupYAML(b.SeedBrokers(), fmt.Sprintf("[ %q ]", entry), "")[len("\nkafka_franz:\n"):], nil)
		if err != nil {
			t.Fatal(err)
		}
		in, err := newFranzInput(conf, service.MockResources())
		if err != nil {
			t.Fatal(err)
		}
		err = in.Connect(context.Background())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Connect returned %v, want an error containing %q", entry, err, want)
		}
		_ = in.Close(context.Background())
	}
}

// TestKafkaFranzInputIsolationLevel writes one committed and one aborted transaction:
// read_committed delivers only the committed records, read_uncommitted both.
func TestKafkaFranzInputIsolationLevel(t *testing.T) {
	const topic = "txn"
	b := startBroker(t, devbroker.Options{Topics: []string{topic}, Partitions: 1})
	txn := newClient(t, b.SeedBrokers(), kgo.TransactionalID("isolation-test"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := context.Background()
	for _, commit := range []bool{true, false} {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			rec := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("%v-%d", commit, i)), Value: []byte("{}")}
			if err := txn.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	// A plain record after both, so a reader knows it has seen everything before it.
	produceN(t, manualProducer(t, b.SeedBrokers()), topic, 1, 100, 1)

	for level, want := range map[string]int{"read_committed": 6, "read_uncommitted": 11} {
		var c collector
		stop := runStream(t, noGroupYAML(b.SeedBrokers(), `[ txn ]`, "  transaction_isolation_level: "+level+"\n"), &c)
		eventually(t, level+": the record after the transactions", func() bool { return c.uniqueKeys()["key-100"] > 0 })
		stop()
		if got := len(c.uniqueKeys()); got != want {
			t.Errorf("%s: %d records delivered (%v), want %d", level, got, c.uniqueKeys(), want)
		}
	}
}
