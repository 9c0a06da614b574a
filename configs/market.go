package configs

import (
	_ "embed"
	"fmt"
	"os"
	"time"

	"github.com/marketcast/marketcast/feed/kline"
	"github.com/marketcast/marketcast/feed/market"
	"github.com/marketcast/marketcast/feed/natsfeed"
	"github.com/marketcast/marketcast/protocol"
)

// CalendarFile is the built-in trading calendar (feed.calendar_file empty).
//
//go:embed trading-calendar.yaml
var CalendarFile []byte

// Calendar reads the trading calendar (feed.calendar_file, else the built-in
// one) with feed.default_sessions for products it does not list.
func (c *Config) Calendar() (*kline.Table, error) {
	data, name := CalendarFile, "the built-in trading calendar"
	if f := c.Feed.CalendarFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("feed.calendar_file: %w", err)
		}
		data, name = b, f
	}
	t, err := kline.ParseTable(data)
	if err != nil {
		return nil, fmt.Errorf("feed.calendar_file: %s: %w", name, err)
	}
	if err := t.WithDefault(c.Feed.DefaultSessions); err != nil {
		return nil, err
	}
	return t, nil
}

// Sessions is what bars are built by (feed.sessions): every product's
// exchange sessions from the trading calendar, or around the clock (the
// simulator's demo hours). The table is nil around the clock.
func (c *Config) Sessions() (kline.Sessions, *kline.Table, error) {
	if c.SessionsKind() == "always" {
		return kline.AlwaysOpen, nil, nil
	}
	t, err := c.Calendar()
	if err != nil {
		return nil, nil, err
	}
	return t.Lookup, t, nil
}

// zone loads an IANA zone Validate has checked.
func zone(name string) *time.Location {
	z, err := time.LoadLocation(name)
	if err != nil {
		panic("configs: zone " + name + " was validated: " + err.Error())
	}
	return z
}

// IngestRules check market data from collectors on NATS and recordings: a
// time without a zone is feed.time_zone's (exchange time, as CTP writes it).
func (c *Config) IngestRules() *protocol.Rules {
	z := zone(c.Feed.TimeZone)
	return &protocol.Rules{Zone: z, Exchange: z, MaxAhead: c.Feed.MaxTimeAhead.Duration}
}

// PublishRules check market data from POST /api/v1/publish: a time without
// a zone is feed.publish_time_zone's (UTC: the seed's back end writes
// datetime.utcnow().isoformat()).
func (c *Config) PublishRules() *protocol.Rules {
	return &protocol.Rules{Zone: zone(c.Feed.PublishTimeZone), Exchange: zone(c.Feed.TimeZone), MaxAhead: c.Feed.MaxTimeAhead.Duration}
}

// NATSIngest is the NATS market source's configuration.
func (c *Config) NATSIngest() natsfeed.Config {
	return natsfeed.Config{MaxBytes: c.Limits.MaxMessageBytes, PendingMessages: c.Feed.NATS.PendingMessages,
		PendingBytes: c.Feed.NATS.PendingBytes, Rules: c.IngestRules()}
}

// Market is the market's configuration, without what the node wires
// itself (the bar store and checkpoints on NATS, the log).
func (c *Config) Market() (market.Config, error) {
	sessions, table, err := c.Sessions()
	if err != nil {
		return market.Config{}, err
	}
	mc := market.Config{MaxSymbols: c.Limits.MaxSymbols, Sessions: sessions, BarHistory: c.Feed.BarHistory,
		Shards: c.Feed.Shards, CheckpointEvery: c.Feed.CheckpointInterval.Duration, BarUpdateEvery: c.Feed.BarUpdateInterval.Duration,
		TimeZones: "feed.time_zone " + c.Feed.TimeZone + ", feed.publish_time_zone " + c.Feed.PublishTimeZone}
	if table != nil {
		mc.CalendarUntil = table.HolidaysUntil()
	}
	return mc, nil
}
