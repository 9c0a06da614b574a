package engine

// FlusherState tells a test what the outbox's flusher is doing: whether one
// runs and whether it is held for the hub's delay timer. Tests wait on it
// instead of sleeping while a flusher takes a frame.
func (o *Outbox) FlusherState() (flushing, held bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.flushing, o.held
}
