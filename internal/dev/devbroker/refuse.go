package devbroker

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Refusal is a topic whose writes the broker refuses, as a real broker does when the producer
// lost its ACL: the error-topic outage of the fault tests and of the bench's stuck scenario,
// which a record that is merely too large cannot produce.
type Refusal struct {
	refusing atomic.Bool
	refused  atomic.Int64
}

// RefuseProduce makes the broker answer every produce request that writes to topic alone with
// TOPIC_AUTHORIZATION_FAILED on each partition, until Lift. A request that also writes to another
// topic passes (the pipeline's error-topic producer writes to its topic alone). adm resolves the
// topic's ID, which newer produce requests name instead of the topic; it must be a client of
// this broker with its TLS and SASL settings.
func (b *Broker) RefuseProduce(ctx context.Context, adm *kadm.Client, topic string) (*Refusal, error) {
	topics, err := adm.ListTopics(ctx, topic)
	if err == nil {
		err = topics.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("devbroker: looking up topic %s to refuse its writes: %w", topic, err)
	}
	id := topics[topic].ID
	r := &Refusal{}
	r.refusing.Store(true)
	b.cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		b.cluster.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		if !r.refusing.Load() || len(req.Topics) == 0 {
			return nil, nil, false
		}
		for _, rt := range req.Topics {
			if rt.Topic != topic && rt.TopicID != id {
				return nil, nil, false
			}
		}
		r.refused.Add(1)
		return refusedProduce(req), nil, true
	})
	return r, nil
}

// refusedProduce is the answer to req refusing each of its partitions.
func refusedProduce(req *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// Refused counts the produce requests refused so far.
func (r *Refusal) Refused() int64 { return r.refused.Load() }

// Lift lets the topic's writes through again.
func (r *Refusal) Lift() { r.refusing.Store(false) }
