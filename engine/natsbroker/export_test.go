package natsbroker

import (
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DropLive makes b drop the republished events for which drop is true, as
// a lossy link between NATS and a node would; it returns the undo.
func DropLive(b *Broker, drop func(seq uint64) bool) (restore func()) {
	b.testDrop.Store(&drop)
	return func() { b.testDrop.Store(nil) }
}

// Attempts makes hook stand between every publish attempt of b and NATS
// (n counts attempts from 1); it returns the undo.
func Attempts(b *Broker, hook func(n int64, publish func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error)) (restore func()) {
	h := attemptHook(hook)
	b.testAttempt.Store(&h)
	return func() { b.testAttempt.Store(nil) }
}

// Subject is a topic's subject in the stream.
func Subject(topic string) string { return subject(topic) }

// Signed is a message of topic as b would write it: sequence seq of epoch,
// its predecessor at stream sequence prev, signed with b's key.
func Signed(b *Broker, topic string, seq uint64, epoch string, prev uint64, data []byte) *nats.Msg {
	subj := subject(topic)
	msg := nats.NewMsg(subj)
	msg.Data = data
	msg.Header.Set(hdrSeq, strconv.FormatUint(seq, 10))
	msg.Header.Set(hdrEpoch, epoch)
	msg.Header.Set(hdrTime, strconv.FormatInt(time.Now().UnixNano(), 10))
	msg.Header.Set(hdrType, "order_update")
	msg.Header.Set(hdrChannel, "orders")
	msg.Header.Set(hdrPrev, strconv.FormatUint(prev, 10))
	b.sign.sign(subj, msg)
	return msg
}
