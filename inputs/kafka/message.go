package kafka

import (
	"cmp"
	"context"
	"slices"
	"unsafe"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/preservarium/iot-ingestor/internal/meta"
	"github.com/preservarium/iot-ingestor/internal/nackreplay"
)

// reservedHeaderPrefix is put before the name of a record header that has the name of one
// of the pipeline's own metadata keys (meta.Reserved), which keep their values.
const reservedHeaderPrefix = "header_"

// recordBatch is the records of a batch of one partition, in offset order, one per message.
// As nackreplay.Originals it builds their messages again, and recognises a message by the
// partition and offset in its metadata, which every message derived from it keeps (the
// error record is a copy): a message whose processors removed them is not recognised, and the
// replayer then delivers the whole batch again.
type recordBatch []*kgo.Record

// The replayer finds this by assertion: a signature that drifted would make it copy every
// batch again, without a word.
var _ nackreplay.Rebuildable = (*franzInput)(nil)

func (b recordBatch) Message(i int) *service.Message { return recordToMessage(b[i], b[i].Topic) }

func (b recordBatch) IndexOf(m *service.Message) (int, bool) {
	topic, _ := m.MetaGetMut(meta.KafkaTopic)
	partition, _ := m.MetaGetMut(meta.KafkaPartition)
	offset, _ := m.MetaGetMut(meta.KafkaOffset)
	t, okT := topic.(string)
	p, okP := partition.(int)
	o, okO := offset.(int)
	if !okT || !okP || !okO || len(b) == 0 || t != b[0].Topic || p != int(b[0].Partition) {
		return 0, false
	}
	i, found := slices.BinarySearchFunc(b, int64(o), func(r *kgo.Record, off int64) int { return cmp.Compare(r.Offset, off) })
	return i, found
}

// recordToMessage builds the message of r. topic is r.Topic as metadata: a partition's consumer
// boxes it once, since metadata values are held as `any` and boxing a string allocates. The key
// is not copied: like the value, which is the message's content, it is a view of the fetched
// batch, which the client allocates afresh for each fetch and never writes again.
func recordToMessage(r *kgo.Record, topic any) *service.Message {
	msg := service.NewMessage(r.Value)
	var fi *fetchInfo
	if r.Context != nil {
		fi, _ = r.Context.Value(fetchInfoKey{}).(*fetchInfo)
	}
	if fi != nil {
		msg.MetaSetMut(meta.KafkaLag, max(fi.highWatermark-r.Offset-1, 0))
	}
	msg.MetaSetMut(meta.KafkaTombstoneMessage, r.Value == nil)
	msg.MetaSetMut(meta.KafkaKey, unsafe.String(unsafe.SliceData(r.Key), len(r.Key)))
	msg.MetaSetMut(meta.KafkaTopic, topic)
	msg.MetaSetMut(meta.KafkaPartition, int(r.Partition))
	msg.MetaSetMut(meta.KafkaOffset, int(r.Offset))
	msg.MetaSetMut(meta.KafkaTimestampUnix, r.Timestamp.Unix())
	msg.MetaSetMut(meta.KafkaTimestampMs, r.Timestamp.UnixMilli())
	if fi != nil && fi.multiHeader {
		setHeaderLists(msg, r.Headers)
		return msg
	}
	for _, h := range r.Headers {
		msg.MetaSetMut(headerKey(h.Key), string(h.Value))
	}
	return msg
}

// headerKey is the metadata key of a record header.
func headerKey(name string) string {
	if meta.Reserved(name) {
		// The pipeline's own keys say where a message came from (the error record's source,
		// the nack replayer's trace): a producer must not be able to forge them.
		return reservedHeaderPrefix + name
	}
	return name
}

// setHeaderLists sets each header key to the list of its values, in the record's order
// (multi_header).
func setHeaderLists(msg *service.Message, headers []kgo.RecordHeader) {
	lists := make(map[string][]any, len(headers))
	var order []string
	for _, h := range headers {
		key := headerKey(h.Key)
		if _, seen := lists[key]; !seen {
			order = append(order, key)
		}
		lists[key] = append(lists[key], string(h.Value))
	}
	for _, key := range order {
		msg.MetaSetMut(key, lists[key])
	}
}

// fetchInfo is what the message of a record needs beyond the record, fixed when its partition
// was fetched: a message built again for redelivery is then the same. One per partition fetch,
// shared by its records through their Context (which the client leaves to the user when
// consuming).
type fetchInfo struct {
	highWatermark int64 // of the partition, in the fetch response
	multiHeader   bool
}

type fetchInfoKey struct{}

// withFetchInfo attaches the fetch's facts to its records.
func withFetchInfo(recs []*kgo.Record, fi *fetchInfo) {
	ctx := context.WithValue(context.Background(), fetchInfoKey{}, fi)
	for _, r := range recs {
		r.Context = ctx
	}
}
