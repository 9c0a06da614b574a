package natsbroker

// DropLive makes b drop the republished events for which drop is true, as
// a lossy link between NATS and a node would; it returns the undo.
func DropLive(b *Broker, drop func(seq uint64) bool) (restore func()) {
	b.testDrop.Store(&drop)
	return func() { b.testDrop.Store(nil) }
}

// Subject is a topic's subject in the stream.
func Subject(topic string) string { return subject(topic) }
