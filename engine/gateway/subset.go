package gateway

import (
	"slices"
	"strings"

	"github.com/marketcast/marketcast/engine"
)

// subSet is a connection's subscriptions, sorted by topic key. A slice, not
// a map: most connections hold a few topics, and a map's first entry alone
// costs 200-odd bytes (of 19,000 idle terminals with one subscription
// each, the most a session held after its buffers); a lookup is a binary
// search. Owned by the read loop.
type subSet struct{ subs []*engine.Subscription }

func (s *subSet) find(key string) (int, bool) {
	return slices.BinarySearchFunc(s.subs, key, func(sub *engine.Subscription, key string) int {
		return strings.Compare(sub.Topic(), key)
	})
}

// get returns the subscription to key, or nil.
func (s *subSet) get(key string) *engine.Subscription {
	if i, ok := s.find(key); ok {
		return s.subs[i]
	}
	return nil
}

// put adds sub, in place of one of the same topic.
func (s *subSet) put(sub *engine.Subscription) {
	i, ok := s.find(sub.Topic())
	if ok {
		s.subs[i] = sub
		return
	}
	s.subs = slices.Insert(s.subs, i, sub)
}

// remove takes out and returns the subscription to key, or nil.
func (s *subSet) remove(key string) *engine.Subscription {
	i, ok := s.find(key)
	if !ok {
		return nil
	}
	sub := s.subs[i]
	s.subs = slices.Delete(s.subs, i, i+1)
	return sub
}

func (s *subSet) len() int { return len(s.subs) }

// keys returns the subscribed topics' keys, in order: a copy, so the set
// may change while they are gone through.
func (s *subSet) keys() []string {
	keys := make([]string, len(s.subs))
	for i, sub := range s.subs {
		keys[i] = sub.Topic()
	}
	return keys
}
