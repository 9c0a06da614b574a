package natsbroker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"sync"

	"github.com/nats-io/nats.go"
)

// hdrSig carries a message's signature: an HMAC-SHA256 of its subject, its
// marketcast headers and its data under the cluster's message key. A node
// treats a message without a valid one as not written by marketcast (a
// stranger's on a private subject, a replayed recording, an operator's
// `nats pub`): it is skipped and counted, never delivered, and never blocks
// the topic.
const hdrSig = "Mc-Sig"

// signedHeaders are the headers a signature covers, in this order.
var signedHeaders = [...]string{hdrSeq, hdrEpoch, hdrTime, hdrType, hdrChannel, hdrStrategy, hdrBroadcast, hdrPrev}

// signer signs and checks messages with the cluster's key.
type signer struct {
	pool sync.Pool // hash.Hash: HMACs keyed once
}

func newSigner(key []byte) *signer {
	s := &signer{}
	s.pool.New = func() any { return hmac.New(sha256.New, key) }
	return s
}

// sum is the signature of a message of subj (the topic's subject in the
// stream) with headers h and data.
func (s *signer) sum(subj string, h nats.Header, data []byte) string {
	mac := s.pool.Get().(hash.Hash)
	defer s.pool.Put(mac)
	mac.Reset()
	var n [4]byte
	field := func(v string) {
		binary.BigEndian.PutUint32(n[:], uint32(len(v)))
		mac.Write(n[:])
		mac.Write([]byte(v))
	}
	field(subj)
	for _, k := range signedHeaders {
		field(h.Get(k))
	}
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	mac.Write(n[:])
	mac.Write(data)
	var out [32]byte
	return base64.RawURLEncoding.EncodeToString(mac.Sum(out[:0])[:18])
}

// sign sets the message's signature.
func (s *signer) sign(subj string, m *nats.Msg) { m.Header.Set(hdrSig, s.sum(subj, m.Header, m.Data)) }

// valid reports whether a message of subj carries a signature made with
// the key.
func (s *signer) valid(subj string, h nats.Header, data []byte) bool {
	got := h.Get(hdrSig)
	return got != "" && hmac.Equal([]byte(got), []byte(s.sum(subj, h, data)))
}
