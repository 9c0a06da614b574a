package engine

// TopicKey names a topic: channel and identity joined by a colon, e.g.
// "tick:SHFE.rb2405", "kline_1m:SHFE.rb2405", "orders:42". Producers and the
// gateway both build keys with it so they agree.
func TopicKey(channel, id string) string { return channel + ":" + id }
