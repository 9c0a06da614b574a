// Package configs holds marketcast's configuration: the embedded default
// file, the Config it decodes into, environment overrides and validation.
package configs

import (
	"crypto/hmac"
	"crypto/sha256"
	_ "embed"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // feed.time_zone loads on a machine without a zone database

	"github.com/goccy/go-yaml"
)

// DefaultFile is the embedded default configuration file.
//
//go:embed marketcast.yaml
var DefaultFile []byte

// DevSecret is the secret of the default file, announced loudly when used.
const DevSecret = "marketcast-development-secret-do-not-use-in-production"

// Config mirrors marketcast.yaml.
type Config struct {
	Listen  string `yaml:"listen"`
	DevMode bool   `yaml:"dev_mode"`
	Pprof   bool   `yaml:"pprof"`
	Web     bool   `yaml:"web"`
	Auth    struct {
		JWTSecret   string   `yaml:"jwt_secret" secret:"true"`
		PublicKeys  []string `yaml:"public_keys"`
		JWKSURL     string   `yaml:"jwks_url"`
		JWKSRefresh Duration `yaml:"jwks_refresh"`
		Issuer      string   `yaml:"issuer"`
		Audience    string   `yaml:"audience"`
		// RequireAudience makes audience and issuer mandatory when tokens
		// come from an identity provider (public_keys, jwks_url).
		RequireAudience    bool     `yaml:"require_audience"`
		DefaultPermissions []string `yaml:"default_permissions"`
		Timeout            Duration `yaml:"timeout"`
		DevTokenTTL        Duration `yaml:"dev_token_ttl"`
	} `yaml:"auth"`
	TLS struct {
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
	} `yaml:"tls"`
	Ops struct {
		Listen         string `yaml:"listen"`
		Token          string `yaml:"token" secret:"true"`
		MaxConnections int    `yaml:"max_connections"`
	} `yaml:"ops"`
	Limits struct {
		MaxSubscriptions int      `yaml:"max_subscriptions"`
		MaxFrameBytes    int      `yaml:"max_frame_bytes"`
		RatePerMinute    int      `yaml:"rate_per_minute"`
		RateBurst        int      `yaml:"rate_burst"`
		RateStrikes      int      `yaml:"rate_strikes"`
		FramesPerSecond  int      `yaml:"frames_per_second"`
		FrameBurst       int      `yaml:"frame_burst"`
		MaxFragments     int      `yaml:"max_fragments"`
		FragmentTimeout  Duration `yaml:"fragment_timeout"`
		MaxPublishBody   int      `yaml:"max_publish_body"`
		MaxMessageBytes  int      `yaml:"max_message_bytes"`
		MaxSymbols       int      `yaml:"max_symbols"`
		MaxConnections   int      `yaml:"max_connections"`
		MaxConnectionsIP int      `yaml:"max_connections_per_ip"`
	} `yaml:"limits"`
	HTTP struct {
		ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
		ReadTimeout       Duration `yaml:"read_timeout"`
		IdleTimeout       Duration `yaml:"idle_timeout"`
		AllowedOrigins    []string `yaml:"allowed_origins"`
	} `yaml:"http"`
	Keepalive struct {
		PingInterval Duration `yaml:"ping_interval"`
	} `yaml:"keepalive"`
	Delivery struct {
		Deflate          bool     `yaml:"deflate"`
		DeflateThreshold int      `yaml:"deflate_threshold"`
		MaxPendingBytes  int      `yaml:"max_pending_bytes"`
		WriteTimeout     Duration `yaml:"write_timeout"`
		FlushDelay       Duration `yaml:"flush_delay"`
		MaxUnsentBytes   int      `yaml:"max_unsent_bytes"`
	} `yaml:"delivery"`
	History struct {
		Size     int      `yaml:"size"`
		TTL      Duration `yaml:"ttl"`
		MaxBytes int      `yaml:"max_bytes"`
	} `yaml:"history"`
	Cluster struct {
		NATSURL      string   `yaml:"nats_url"`
		NATSCreds    string   `yaml:"nats_creds"`
		NATSUser     string   `yaml:"nats_user"`
		NATSPassword string   `yaml:"nats_password" secret:"true"`
		NATSToken    string   `yaml:"nats_token" secret:"true"`
		Name         string   `yaml:"name"`
		HeadCheck    Duration `yaml:"head_check"`
		Timeout      Duration `yaml:"timeout"`
		MessageKey   string   `yaml:"message_key" secret:"true"`
		Stream       struct {
			Name       string   `yaml:"name"`
			Replicas   int      `yaml:"replicas"`
			Storage    string   `yaml:"storage"`
			MaxAge     Duration `yaml:"max_age"`
			MaxBytes   int64    `yaml:"max_bytes"`
			Duplicates Duration `yaml:"duplicates"`
		} `yaml:"stream"`
		Embedded EmbeddedNATS `yaml:"embedded"`
	} `yaml:"cluster"`
	Feed struct {
		Kind       string `yaml:"kind"`
		Sessions   string `yaml:"sessions"`
		BarHistory int    `yaml:"bar_history"`
		Sim        struct {
			Rate        float64  `yaml:"rate"`
			Levels      int      `yaml:"levels"`
			Hours       string   `yaml:"hours"`
			Symbols     []string `yaml:"symbols"`
			SymbolCount int      `yaml:"symbol_count"`
			Backfill    Duration `yaml:"backfill"`
			Seed        int64    `yaml:"seed"`
		} `yaml:"sim"`
		Replay struct {
			File  string  `yaml:"file"`
			Speed float64 `yaml:"speed"`
		} `yaml:"replay"`
		CalendarFile       string   `yaml:"calendar_file"`
		DefaultSessions    string   `yaml:"default_sessions"`
		TimeZone           string   `yaml:"time_zone"`
		PublishTimeZone    string   `yaml:"publish_time_zone"`
		MaxTimeAhead       Duration `yaml:"max_time_ahead"`
		Shards             int      `yaml:"shards"`
		CheckpointInterval Duration `yaml:"checkpoint_interval"`
		BarUpdateInterval  Duration `yaml:"bar_update_interval"`
		NATS               struct {
			PendingMessages int `yaml:"pending_messages"`
			PendingBytes    int `yaml:"pending_bytes"`
		} `yaml:"nats"`
	} `yaml:"feed"`
	Shutdown struct {
		UnreadyDelay Duration `yaml:"unready_delay"`
		Grace        Duration `yaml:"grace"`
		Drain        string   `yaml:"drain"`
	} `yaml:"shutdown"`
	Log struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`

	envSet   map[string]string // key path → the variable that set it
	warnings []string
}

// Warnings are what loading found suspect but not wrong: MARKETCAST_
// variables that set no key. The server logs them at start.
func (c *Config) Warnings() []string { return c.warnings }

// Duration is a time.Duration written as "5s" or "250ms". A value that does
// not parse is kept and reported by Validate, which knows the key's name.
type Duration struct {
	time.Duration
	bad string
}

// UnmarshalYAML implements yaml.BytesUnmarshaler.
func (d *Duration) UnmarshalYAML(b []byte) error {
	s := strings.Trim(strings.TrimSpace(string(b)), `"'`)
	v, err := time.ParseDuration(s)
	if err != nil {
		*d = Duration{bad: s}
		return nil
	}
	*d = Duration{Duration: v}
	return nil
}

// MarshalYAML writes the duration as the file does: "5s", "2ms", "24h".
func (d Duration) MarshalYAML() ([]byte, error) {
	if d.bad != "" {
		return []byte(d.bad), nil
	}
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return []byte(s), nil
}

// Load decodes the default file, then file (if not empty) over it, then the
// environment (env.go: MARKETCAST_ and the key's path), and validates the
// result. Keys a file does not set keep their default; unknown keys are
// errors. A nil getenv reads the process environment, and MARKETCAST_
// variables that set nothing become Warnings.
func Load(file string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		return LoadEnviron(file, os.Environ())
	}
	return load(file, getenv, nil)
}

// LoadEnviron is Load with environ, a list of NAME=value as os.Environ
// returns it, for the environment.
func LoadEnviron(file string, environ []string) (*Config, error) {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return load(file, func(k string) string { return env[k] }, environ)
}

func load(file string, getenv func(string) string, environ []string) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalWithOptions(DefaultFile, &c, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("config: embedded default: %w", err)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := checkTypes(b); err != nil {
			return nil, fmt.Errorf("config: %s:%v", file, err)
		}
		if err := yaml.UnmarshalWithOptions(b, &c, yaml.Strict()); err != nil {
			return nil, fmt.Errorf("config: %s: %s", file, yaml.FormatError(err, false, true))
		}
	}
	if err := c.applyEnv(getenv, environ); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// EmbeddedNATS is the NATS server a node (or `marketcast nats`) runs in
// its own process.
type EmbeddedNATS struct {
	DataDir    string `yaml:"data_dir"`
	Listen     string `yaml:"listen"`
	SyncAlways bool   `yaml:"sync_always"`
	// The users that may connect over Listen, each with a password or an
	// nkey (its public key): node (what a marketcast node needs),
	// collector (publish market data only), recorder (read market data
	// only).
	NodePassword      string `yaml:"node_password" secret:"true"`
	NodeNKey          string `yaml:"node_nkey"`
	CollectorPassword string `yaml:"collector_password" secret:"true"`
	CollectorNKey     string `yaml:"collector_nkey"`
	RecorderPassword  string `yaml:"recorder_password" secret:"true"`
	RecorderNKey      string `yaml:"recorder_nkey"`
}

// HasUsers reports whether any user may connect over Listen (then every
// connection must authenticate).
func (e *EmbeddedNATS) HasUsers() bool {
	return e.NodePassword != "" || e.NodeNKey != "" || e.CollectorPassword != "" || e.CollectorNKey != "" ||
		e.RecorderPassword != "" || e.RecorderNKey != ""
}

// loopback reports whether a host:port listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// MessageKey is the key that signs the cluster's private messages:
// cluster.message_key, or one derived from auth.jwt_secret (which every
// node of a cluster shares).
func (c *Config) MessageKey() []byte {
	if c.Cluster.MessageKey != "" {
		return []byte(c.Cluster.MessageKey)
	}
	mac := hmac.New(sha256.New, []byte(c.Auth.JWTSecret))
	mac.Write([]byte("marketcast cluster message key v1"))
	return mac.Sum(nil)
}

// SessionsKind is the calendar bars are built by: "auto" follows the
// built-in simulator's hours when it is the feed, and each product's
// exchange sessions otherwise.
func (c *Config) SessionsKind() string {
	if c.Feed.Sessions != "auto" {
		return c.Feed.Sessions
	}
	if c.FeedKind() == "sim" && c.Feed.Sim.Hours == "always" {
		return "always"
	}
	return "exchange"
}

// UsesIdentityProvider reports whether tokens may come from an identity
// provider: public keys or a JWKS URL are configured.
func (c *Config) UsesIdentityProvider() bool {
	return len(c.Auth.PublicKeys) > 0 || c.Auth.JWKSURL != ""
}

// knownPermissions are the permissions auth.default_permissions may grant.
var knownPermissions = []string{"read:market_data", "read:signals", "publish"}

func allKnown(list, known []string) bool {
	for _, v := range list {
		if !slices.Contains(known, v) {
			return false
		}
	}
	return true
}

// SecurityWarnings are what a serving process warns about at start:
// settings that are valid but risky.
func (c *Config) SecurityWarnings() []string {
	var w []string
	if c.UsesIdentityProvider() && !c.Auth.RequireAudience {
		if c.Auth.Audience == "" {
			w = append(w, "auth.audience is empty: a token your identity provider issued for any other application "+
				"(with a sub and permissions or scope) is accepted here; set auth.audience, and auth.require_audience: true")
		}
		if c.Auth.Issuer == "" {
			w = append(w, "auth.issuer is empty: tokens from any issuer whose keys are configured are accepted; set auth.issuer")
		}
	}
	if len(c.Auth.DefaultPermissions) > 0 {
		w = append(w, "auth.default_permissions grants "+strings.Join(c.Auth.DefaultPermissions, ", ")+
			" to every token that carries no permissions (a migration aid: docs/MIGRATING-FROM-SEED.md)")
	}
	return w
}

// UsesNATS reports whether the node runs on NATS: a NATS URL, or an
// embedded NATS server with a data directory.
func (c *Config) UsesNATS() bool { return c.Cluster.NATSURL != "" || c.Cluster.Embedded.DataDir != "" }

// FeedKind is the market source actually run: "auto" is the simulator on a
// node of its own (or the replay of feed.replay.file, when set) and NATS
// ingest on a node of a cluster (where one `marketcast feed` process
// publishes for every node).
func (c *Config) FeedKind() string {
	if c.Feed.Kind != "auto" {
		return c.Feed.Kind
	}
	switch {
	case c.Cluster.NATSURL != "":
		return "nats"
	case c.Feed.Replay.File != "":
		return "replay"
	}
	return "sim"
}

// CheckServe checks what only a serving process needs: the secret agrees
// with development mode (checkSecret), and a production server names its
// market feed (checkFeed).
func (c *Config) CheckServe() error {
	if err := c.checkSecret(); err != nil {
		return err
	}
	return c.checkFeed()
}

// checkFeed: a server not in development mode whose feed.kind auto would
// run the simulator refuses to start, rather than serve random prices
// under real contract names to production terminals by surprise.
// Simulated prices in production must be asked for (feed.kind: sim).
func (c *Config) checkFeed() error {
	if c.DevMode || c.Feed.Kind != "auto" || c.FeedKind() != "sim" {
		return nil
	}
	return fmt.Errorf("config: feed.kind: auto would run the built-in simulator (random prices under real contract names) " +
		"on a production server (dev_mode: false); name the feed: nats (with cluster.nats_url, or cluster.embedded.data_dir " +
		"and a collector publishing md.*), replay (feed.replay.file), none (market data from the publish API only), or sim " +
		"to serve simulated prices on purpose (MARKETCAST_FEED=nats|replay|none|sim)")
}

// checkSecret: development mode and the secret must agree. Development
// mode serves GET /dev/token, which signs a token for anyone with the
// configured secret, so it runs only with the public development secret; a
// server not in development mode must not accept tokens anyone can mint
// with that public secret.
func (c *Config) checkSecret() error {
	switch {
	case c.DevMode && c.Auth.JWTSecret != DevSecret:
		return fmt.Errorf("config: dev_mode: development mode signs tokens for anyone at /dev/token, so it runs only " +
			"with the public development secret, not a real auth.jwt_secret; set dev_mode: false (MARKETCAST_DEV_MODE=false)")
	case !c.DevMode && c.Auth.JWTSecret == DevSecret:
		return fmt.Errorf("config: auth.jwt_secret: the development secret is public (anyone can mint tokens with it); " +
			"set auth.jwt_secret or MARKETCAST_JWT_SECRET, or turn dev_mode on (MARKETCAST_DEV_MODE=true)")
	}
	return nil
}

// Validate checks every value and names the key of the first bad one.
func (c *Config) Validate() error {
	bad := func(key string, val any, want string) error {
		if name := c.envSet[key]; name != "" {
			key += " (set by " + name + ")"
		}
		return fmt.Errorf("config: %s: %s, got %v", key, want, val)
	}
	for key, d := range map[string]Duration{
		"auth.timeout": c.Auth.Timeout, "auth.dev_token_ttl": c.Auth.DevTokenTTL, "auth.jwks_refresh": c.Auth.JWKSRefresh,
		"keepalive.ping_interval": c.Keepalive.PingInterval, "delivery.write_timeout": c.Delivery.WriteTimeout, "delivery.flush_delay": c.Delivery.FlushDelay,
		"history.ttl": c.History.TTL, "shutdown.grace": c.Shutdown.Grace, "limits.fragment_timeout": c.Limits.FragmentTimeout,
		"shutdown.unready_delay": c.Shutdown.UnreadyDelay,
		"cluster.head_check":     c.Cluster.HeadCheck, "cluster.timeout": c.Cluster.Timeout, "cluster.stream.max_age": c.Cluster.Stream.MaxAge,
		"cluster.stream.duplicates": c.Cluster.Stream.Duplicates,
		"http.read_header_timeout":  c.HTTP.ReadHeaderTimeout, "http.read_timeout": c.HTTP.ReadTimeout, "http.idle_timeout": c.HTTP.IdleTimeout,
		"feed.max_time_ahead": c.Feed.MaxTimeAhead, "feed.checkpoint_interval": c.Feed.CheckpointInterval,
		"feed.bar_update_interval": c.Feed.BarUpdateInterval,
	} {
		if d.bad != "" {
			return bad(key, fmt.Sprintf("%q", d.bad), "want a duration such as 5s or 250ms")
		}
	}
	switch {
	case c.Listen == "" || !strings.Contains(c.Listen, ":"):
		return bad("listen", fmt.Sprintf("%q", c.Listen), "want host:port such as :8000")
	case len(c.Auth.JWTSecret) < 16 && (c.Auth.JWTSecret != "" || len(c.Auth.PublicKeys) == 0 && c.Auth.JWKSURL == ""):
		return bad("auth.jwt_secret", fmt.Sprintf("%d characters", len(c.Auth.JWTSecret)),
			"want at least 16 characters (empty only with auth.public_keys or auth.jwks_url)")
	case c.Auth.JWKSURL != "" && !strings.HasPrefix(c.Auth.JWKSURL, "https://") && !strings.HasPrefix(c.Auth.JWKSURL, "http://"):
		return bad("auth.jwks_url", fmt.Sprintf("%q", c.Auth.JWKSURL), "want an http(s) URL")
	case c.Auth.JWKSRefresh.Duration < time.Minute:
		return bad("auth.jwks_refresh", c.Auth.JWKSRefresh.Duration, "want >= 1m")
	case (c.TLS.CertFile == "") != (c.TLS.KeyFile == ""):
		return bad("tls", fmt.Sprintf("cert_file %q, key_file %q", c.TLS.CertFile, c.TLS.KeyFile), "want both files or neither")
	case c.Ops.Listen != "" && !strings.Contains(c.Ops.Listen, ":"):
		return bad("ops.listen", fmt.Sprintf("%q", c.Ops.Listen), "want host:port such as 127.0.0.1:9090")
	case c.Ops.MaxConnections < 1:
		return bad("ops.max_connections", c.Ops.MaxConnections, "want >= 1")
	case c.Ops.Token != "" && len(c.Ops.Token) < 16:
		return bad("ops.token", fmt.Sprintf("%d characters", len(c.Ops.Token)), "want at least 16 characters")
	case c.Auth.RequireAudience && c.UsesIdentityProvider() && (c.Auth.Audience == "" || c.Auth.Issuer == ""):
		return bad("auth.require_audience", fmt.Sprintf("audience %q, issuer %q", c.Auth.Audience, c.Auth.Issuer),
			"want auth.audience and auth.issuer set: an identity provider signs tokens for other applications with the same keys")
	case !allKnown(c.Auth.DefaultPermissions, knownPermissions):
		return bad("auth.default_permissions", c.Auth.DefaultPermissions, "want a list of "+strings.Join(knownPermissions, ", "))
	case c.Auth.Timeout.Duration <= 0:
		return bad("auth.timeout", c.Auth.Timeout.Duration, "want > 0")
	case c.DevMode && c.Auth.DevTokenTTL.Duration <= 0:
		return bad("auth.dev_token_ttl", c.Auth.DevTokenTTL.Duration, "want > 0 in dev_mode")
	case c.Limits.MaxSubscriptions <= 0:
		return bad("limits.max_subscriptions", c.Limits.MaxSubscriptions, "want > 0")
	case c.Limits.MaxFrameBytes < 128:
		return bad("limits.max_frame_bytes", c.Limits.MaxFrameBytes, "want >= 128")
	case c.Limits.RatePerMinute <= 0:
		return bad("limits.rate_per_minute", c.Limits.RatePerMinute, "want > 0")
	case c.Limits.RateBurst <= 0:
		return bad("limits.rate_burst", c.Limits.RateBurst, "want > 0")
	case c.Limits.RateStrikes <= 0:
		return bad("limits.rate_strikes", c.Limits.RateStrikes, "want > 0")
	case c.Limits.FramesPerSecond <= 0:
		return bad("limits.frames_per_second", c.Limits.FramesPerSecond, "want > 0")
	case c.Limits.FrameBurst < c.Limits.RateBurst:
		return bad("limits.frame_burst", c.Limits.FrameBurst, "want >= limits.rate_burst (every request is at least one frame)")
	case c.Limits.MaxFragments < 1:
		return bad("limits.max_fragments", c.Limits.MaxFragments, "want >= 1")
	case c.Limits.FragmentTimeout.Duration <= 0:
		return bad("limits.fragment_timeout", c.Limits.FragmentTimeout.Duration, "want > 0")
	case c.Limits.MaxPublishBody < 1024:
		return bad("limits.max_publish_body", c.Limits.MaxPublishBody, "want >= 1024")
	case c.Limits.MaxMessageBytes < 256 || c.Limits.MaxMessageBytes > c.Limits.MaxPublishBody:
		return bad("limits.max_message_bytes", c.Limits.MaxMessageBytes, "want in [256, limits.max_publish_body]")
	case c.Limits.MaxSymbols <= 0:
		return bad("limits.max_symbols", c.Limits.MaxSymbols, "want > 0")
	case c.Limits.MaxConnections < 0:
		return bad("limits.max_connections", c.Limits.MaxConnections, "want >= 0 (0: the open-file limit less a reserve)")
	case c.Limits.MaxConnectionsIP < 0:
		return bad("limits.max_connections_per_ip", c.Limits.MaxConnectionsIP, "want >= 0 (0: no per-address limit)")
	case c.HTTP.ReadHeaderTimeout.Duration <= 0:
		return bad("http.read_header_timeout", c.HTTP.ReadHeaderTimeout.Duration, "want > 0")
	case c.HTTP.ReadTimeout.Duration <= 0:
		return bad("http.read_timeout", c.HTTP.ReadTimeout.Duration, "want > 0")
	case c.HTTP.IdleTimeout.Duration <= 0:
		return bad("http.idle_timeout", c.HTTP.IdleTimeout.Duration, "want > 0")
	case c.Keepalive.PingInterval.Duration < time.Second:
		return bad("keepalive.ping_interval", c.Keepalive.PingInterval.Duration, "want >= 1s")
	case c.Delivery.DeflateThreshold < 0:
		return bad("delivery.deflate_threshold", c.Delivery.DeflateThreshold, "want >= 0")
	case c.Delivery.MaxPendingBytes < 64<<10:
		return bad("delivery.max_pending_bytes", c.Delivery.MaxPendingBytes, "want >= 65536")
	case c.Delivery.WriteTimeout.Duration <= 0:
		return bad("delivery.write_timeout", c.Delivery.WriteTimeout.Duration, "want > 0")
	case c.Delivery.MaxUnsentBytes < 0 || c.Delivery.MaxUnsentBytes > 64<<20:
		return bad("delivery.max_unsent_bytes", c.Delivery.MaxUnsentBytes, "want in [0, 67108864]")
	case c.Delivery.FlushDelay.Duration < 0 || c.Delivery.FlushDelay.Duration > 100*time.Millisecond:
		return bad("delivery.flush_delay", c.Delivery.FlushDelay.Duration, "want in [0, 100ms]")
	case c.History.Size <= 0:
		return bad("history.size", c.History.Size, "want > 0")
	case c.History.TTL.Duration <= 0:
		return bad("history.ttl", c.History.TTL.Duration, "want > 0")
	case c.History.MaxBytes < 64<<10:
		return bad("history.max_bytes", c.History.MaxBytes, "want >= 65536")
	case !slices.Contains([]string{"auto", "sim", "nats", "replay", "none"}, c.Feed.Kind):
		return bad("feed.kind", fmt.Sprintf("%q", c.Feed.Kind), `want "auto", "sim", "nats", "replay" or "none"`)
	case c.Feed.Kind == "replay" && c.Feed.Replay.File == "":
		return bad("feed.kind", `"replay"`, "needs feed.replay.file (MARKETCAST_REPLAY_FILE): a recording made by `marketcast record`")
	case c.Feed.Replay.Speed < 0:
		return bad("feed.replay.speed", c.Feed.Replay.Speed, "want >= 0 (0: as fast as possible)")
	case c.Feed.Kind == "nats" && !c.UsesNATS():
		return bad("feed.kind", `"nats"`, "needs cluster.nats_url (MARKETCAST_NATS_URL) or cluster.embedded.data_dir")
	case (c.Feed.Kind == "sim" || c.Feed.Kind == "replay") && c.Cluster.NATSURL != "":
		return bad("feed.kind", fmt.Sprintf("%q", c.Feed.Kind), "a node of a cluster takes market data from NATS: run one `marketcast feed` for the "+
			"cluster and leave feed.kind auto (or nats)")
	case c.Cluster.Stream.Name == "" || strings.ContainsAny(c.Cluster.Stream.Name, ". *>"):
		return bad("cluster.stream.name", fmt.Sprintf("%q", c.Cluster.Stream.Name), "want a stream name without . * > or spaces")
	case c.Cluster.Stream.Replicas < 1 || c.Cluster.Stream.Replicas > 5:
		return bad("cluster.stream.replicas", c.Cluster.Stream.Replicas, "want 1 to 5")
	case c.Cluster.Stream.Storage != "file" && c.Cluster.Stream.Storage != "memory":
		return bad("cluster.stream.storage", fmt.Sprintf("%q", c.Cluster.Stream.Storage), "want file or memory")
	case c.Cluster.Stream.MaxAge.Duration < c.History.TTL.Duration:
		return bad("cluster.stream.max_age", c.Cluster.Stream.MaxAge.Duration, "want >= history.ttl (the stream keeps a topic's run longer than its resume window)")
	case c.Cluster.Stream.Duplicates.Duration <= 0:
		return bad("cluster.stream.duplicates", c.Cluster.Stream.Duplicates.Duration, "want > 0")
	case c.Cluster.HeadCheck.Duration < time.Second:
		return bad("cluster.head_check", c.Cluster.HeadCheck.Duration, "want >= 1s")
	case c.Cluster.NATSURL != "" && c.Cluster.Embedded.DataDir != "":
		return bad("cluster.embedded.data_dir", fmt.Sprintf("%q", c.Cluster.Embedded.DataDir), "is for a node without cluster.nats_url: use one or the other")
	case c.Cluster.Timeout.Duration < 50*time.Millisecond || c.Cluster.Timeout.Duration > time.Minute:
		return bad("cluster.timeout", c.Cluster.Timeout.Duration, "want in [50ms, 1m]")
	case c.Cluster.MessageKey != "" && len(c.Cluster.MessageKey) < 16:
		return bad("cluster.message_key", fmt.Sprintf("%d characters", len(c.Cluster.MessageKey)), "want at least 16 characters")
	case c.UsesNATS() && c.Cluster.MessageKey == "" && c.Auth.JWTSecret == "":
		return bad("cluster.message_key", `""`, "is needed when auth.jwt_secret is empty (the key is derived from that secret otherwise): "+
			"set one secret shared by every node (MARKETCAST_CLUSTER_MESSAGE_KEY)")
	case c.Cluster.Embedded.Listen != "" && !loopback(c.Cluster.Embedded.Listen) && !c.Cluster.Embedded.HasUsers():
		return bad("cluster.embedded.listen", fmt.Sprintf("%q", c.Cluster.Embedded.Listen), "is not a loopback address: set a password or "+
			"nkey for the users that connect to it (cluster.embedded.node_password, collector_password, recorder_password …), "+
			"or anyone who reaches it reads and forges every private message")
	case c.Shutdown.Drain != "close" && c.Shutdown.Drain != "drop":
		return bad("shutdown.drain", fmt.Sprintf("%q", c.Shutdown.Drain), `want "close" or "drop"`)
	case c.Feed.Sessions != "auto" && c.Feed.Sessions != "exchange" && c.Feed.Sessions != "always":
		return bad("feed.sessions", fmt.Sprintf("%q", c.Feed.Sessions), `want "auto", "exchange" or "always"`)
	case c.Feed.Sim.Hours != "always" && c.Feed.Sim.Hours != "exchange":
		return bad("feed.sim.hours", fmt.Sprintf("%q", c.Feed.Sim.Hours), `want "always" or "exchange"`)
	case c.Feed.BarHistory < 0 || c.Feed.BarHistory > 5000:
		return bad("feed.bar_history", c.Feed.BarHistory, "want in [0, 5000]")
	case c.Feed.Sim.Rate <= 0 || c.Feed.Sim.Rate > 1000:
		return bad("feed.sim.rate", c.Feed.Sim.Rate, "want in (0, 1000]")
	case c.Feed.Sim.Levels < 1 || c.Feed.Sim.Levels > 20:
		return bad("feed.sim.levels", c.Feed.Sim.Levels, "want in [1, 20]")
	case c.Feed.Sim.Backfill.Duration < 0 || c.Feed.Sim.Backfill.Duration > 7*24*time.Hour:
		return bad("feed.sim.backfill", c.Feed.Sim.Backfill.Duration, "want in [0, 168h]")
	case c.Feed.Sim.SymbolCount < 0 || c.Feed.Sim.SymbolCount > 100000:
		return bad("feed.sim.symbol_count", c.Feed.Sim.SymbolCount, "want in [0, 100000]")
	case c.Shutdown.Grace.Duration <= 0:
		return bad("shutdown.grace", c.Shutdown.Grace.Duration, "want > 0")
	case c.Shutdown.UnreadyDelay.Duration < 0 || c.Shutdown.UnreadyDelay.Duration > 10*time.Minute:
		return bad("shutdown.unready_delay", c.Shutdown.UnreadyDelay.Duration, "want in [0, 10m]")
	case c.Feed.MaxTimeAhead.Duration < time.Second || c.Feed.MaxTimeAhead.Duration > 10*time.Minute:
		return bad("feed.max_time_ahead", c.Feed.MaxTimeAhead.Duration, "want in [1s, 10m]")
	case c.Feed.BarUpdateInterval.Duration < 0 || c.Feed.BarUpdateInterval.Duration > time.Second:
		return bad("feed.bar_update_interval", c.Feed.BarUpdateInterval.Duration, "want in [0, 1s] (0: every tick)")
	case c.Feed.Sim.Seed < 0:
		return bad("feed.sim.seed", c.Feed.Sim.Seed, "want >= 0 (0: a new market at each start)")
	case c.Feed.CheckpointInterval.Duration < 0:
		return bad("feed.checkpoint_interval", c.Feed.CheckpointInterval.Duration, "want >= 0 (0: never)")
	case c.Feed.Shards < 0 || c.Feed.Shards > 256:
		return bad("feed.shards", c.Feed.Shards, "want in [0, 256] (0: one per CPU)")
	case c.Feed.NATS.PendingMessages < 1024:
		return bad("feed.nats.pending_messages", c.Feed.NATS.PendingMessages, "want >= 1024")
	case c.Feed.NATS.PendingBytes < 1<<20:
		return bad("feed.nats.pending_bytes", c.Feed.NATS.PendingBytes, "want >= 1048576")
	}
	if _, err := time.LoadLocation(c.Feed.TimeZone); err != nil || c.Feed.TimeZone == "" {
		return bad("feed.time_zone", fmt.Sprintf("%q", c.Feed.TimeZone), "want an IANA zone such as Asia/Shanghai or UTC")
	}
	if _, err := time.LoadLocation(c.Feed.PublishTimeZone); err != nil || c.Feed.PublishTimeZone == "" {
		return bad("feed.publish_time_zone", fmt.Sprintf("%q", c.Feed.PublishTimeZone), "want an IANA zone such as UTC or Asia/Shanghai")
	}
	if _, err := c.Calendar(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", fmt.Sprintf("%q", c.Log.Level), "want debug, info, warn or error")
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return bad("log.format", fmt.Sprintf("%q", c.Log.Format), "want text or json")
	}
	return nil
}
