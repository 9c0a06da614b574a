package configs

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/engine/gateway"
	"github.com/marketcast/marketcast/engine/natsbroker"
)

// Settings too internal for the file: named here, their one home.
const (
	// hubShards: topic registry shards; 64 keeps lock contention negligible
	// on any core count this server meets.
	hubShards = 64
	// replayPage: events a resume reads from the broker at a time.
	replayPage = 256
	// topicLinger: how long a private topic nobody holds stays watched
	// before the node forgets it (a reconnect storm then costs no churn).
	topicLinger = 30 * time.Second
	// subscribeTimeout bounds the broker reads of one subscribe.
	subscribeTimeout = 10 * time.Second
)

// Default returns the embedded default configuration, with no environment
// applied. Tests use it to run the production defaults.
func Default() *Config {
	c, err := Load("", func(string) string { return "" })
	if err != nil {
		panic("configs: the embedded default does not load: " + err.Error())
	}
	return c
}

// Engine is the hub's configuration.
func (c *Config) Engine() engine.Config {
	return engine.Config{
		Shards:           hubShards,
		DeflateThreshold: c.Delivery.DeflateThreshold,
		MaxPendingBytes:  c.Delivery.MaxPendingBytes,
		WriteTimeout:     c.Delivery.WriteTimeout.Duration,
		FlushDelay:       c.Delivery.FlushDelay.Duration,
		Linger:           topicLinger,
		ReplayPage:       replayPage,
		BarHistory:       c.Feed.BarHistory,
		MaxUnsentBytes:   c.Delivery.MaxUnsentBytes,
	}
}

// HistoryLimits bound each private topic's history.
func (c *Config) HistoryLimits() engine.HistoryLimits {
	return engine.HistoryLimits{Size: c.History.Size, TTL: c.History.TTL.Duration, MaxBytes: c.History.MaxBytes}
}

// Gateway is the gateway's configuration, without the development token
// and the demo page, which the server wires itself.
func (c *Config) Gateway() gateway.Config {
	return gateway.Config{
		MaxSubscriptions: c.Limits.MaxSubscriptions,
		MaxFrameBytes:    c.Limits.MaxFrameBytes,
		RatePerMinute:    c.Limits.RatePerMinute,
		RateBurst:        c.Limits.RateBurst,
		RateStrikes:      c.Limits.RateStrikes,
		FramesPerSecond:  c.Limits.FramesPerSecond,
		FrameBurst:       c.Limits.FrameBurst,
		MaxFragments:     c.Limits.MaxFragments,
		FragmentTimeout:  c.Limits.FragmentTimeout.Duration,
		AuthTimeout:      c.Auth.Timeout.Duration,
		PingInterval:     c.Keepalive.PingInterval.Duration,
		DisableDeflate:   !c.Delivery.Deflate,
		MaxPublishBody:   c.Limits.MaxPublishBody,
		MaxMessageBytes:  c.Limits.MaxMessageBytes,
		MarketRules:      c.PublishRules(),
		SubscribeTimeout: subscribeTimeout,

		MaxConnections:      c.maxConnections(),
		MaxConnectionsPerIP: c.Limits.MaxConnectionsIP,
		ReadHeaderTimeout:   c.HTTP.ReadHeaderTimeout.Duration,
		ReadTimeout:         c.HTTP.ReadTimeout.Duration,
		IdleTimeout:         c.HTTP.IdleTimeout.Duration,
		AllowedOrigins:      c.HTTP.AllowedOrigins,
		MaxBarHistory:       c.Feed.BarHistory,
		DrainDrop:           c.Shutdown.Drain == "drop",
		OpsToken:            c.Ops.Token,
		OpsSeparate:         c.Ops.Listen != "",
	}
}

// NATSBroker is the cluster broker's configuration.
func (c *Config) NATSBroker() natsbroker.Config {
	s := c.Cluster.Stream
	return natsbroker.Config{
		Stream: s.Name, Replicas: s.Replicas, Memory: s.Storage == "memory",
		History: c.HistoryLimits(), MaxAge: s.MaxAge.Duration, MaxBytes: s.MaxBytes,
		Duplicates: s.Duplicates.Duration, HeadCheck: c.Cluster.HeadCheck.Duration, Timeout: c.Cluster.Timeout.Duration,
		Key: c.MessageKey(), Server: c.NATSServer(),
	}
}

// NATSServer names the node's NATS server in logs and errors: the URLs
// without credentials, or the embedded server.
func (c *Config) NATSServer() string {
	if c.Cluster.NATSURL == "" {
		return "the embedded NATS server"
	}
	var out []string
	for _, raw := range strings.Split(c.Cluster.NATSURL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" {
			out = append(out, "(a malformed URL)")
			continue
		}
		u.User = nil
		out = append(out, u.String())
	}
	return strings.Join(out, ",")
}

// NodeName names this node in logs and to NATS: cluster.name, or the host
// and listen address.
func (c *Config) NodeName() string {
	if c.Cluster.Name != "" {
		return c.Cluster.Name
	}
	host, _ := os.Hostname()
	return host + "/" + c.Listen
}

// Verifier builds the token verifier: the HS256 secret, the public key
// files, the JWKS (fetched now: an unreachable one is an error).
func (c *Config) Verifier() (*auth.Verifier, error) {
	ac := auth.Config{Secret: []byte(c.Auth.JWTSecret), JWKSURL: c.Auth.JWKSURL, JWKSRefresh: c.Auth.JWKSRefresh.Duration,
		Issuer: c.Auth.Issuer, Audience: c.Auth.Audience, DefaultPermissions: c.Auth.DefaultPermissions}
	for _, file := range c.Auth.PublicKeys {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("config: auth.public_keys: %w", err)
		}
		k, err := auth.ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("config: auth.public_keys: %s: %w", file, err)
		}
		ac.PublicKeys = append(ac.PublicKeys, k)
	}
	v, err := auth.New(ac)
	if err != nil {
		return nil, fmt.Errorf("config: auth: %w", err)
	}
	return v, nil
}

// fdReserve is what limits.max_connections: 0 leaves of the open-file limit
// for everything that is not a client connection (files, broker links,
// the health reserve).
const fdReserve = 256

// maxConnections is limits.max_connections, or the process's open-file
// limit less fdReserve when it is 0.
func (c *Config) maxConnections() int {
	if c.Limits.MaxConnections > 0 {
		return c.Limits.MaxConnections
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<20 {
		return 100000
	}
	reserve := fdReserve
	if c.Ops.Listen != "" {
		reserve += c.Ops.MaxConnections + 64 // the ops listener's cap and health reserve
	}
	return max(int(rl.Cur)-reserve, 64)
}
