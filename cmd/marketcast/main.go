// Command marketcast is the market-data fan-out server; `marketcast help`
// lists its commands (the table below).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // time zones (TZ=Asia/Shanghai) on scratch images and minimal hosts too: 450 KB

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/internal/buildinfo"
	"github.com/marketcast/marketcast/protocol"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// -h: the flags were printed; asking for help is no failure.
	case err != nil:
		fmt.Fprintln(os.Stderr, "marketcast:", err)
		os.Exit(1)
	}
}

// commands are the subcommands, in the order help lists them.
var commands = []struct{ name, args, summary string }{
	{"serve", "[-config FILE]", "run the server (the default when no command is given)"},
	{"check-config", "[-config FILE]", "validate the configuration and print it as it takes effect, secrets masked"},
	{"default-config", "", "print the embedded default configuration, with its comments: a start for -config FILE"},
	{"token", "-user ID [-permissions a,b] [-ttl 1h] [-config FILE]", "sign a client token with auth.jwt_secret"},
	{"feed", "[-config FILE] [-replay FILE [-speed N] [-all-subjects]]", "run a cluster's market source once, publishing to NATS"},
	{"record", "-out FILE [-for D] [-subjects S [-allow-private]] [-config FILE]", "record the market data crossing NATS, for feed -replay"},
	{"nats", "[-listen ADDR] [-store DIR] [-sync-always] [-node-password P] [-collector-password P] [-recorder-password P]", "run a NATS server with JetStream: a cluster's broker"},
	{"healthcheck", "[-ready] [-config FILE]", "probe this configuration's own server: exit 0 when /healthz (-ready: /readyz) answers 200"},
	{"version", "", "print the version, commit and build date (also --version)"},
	{"help", "[COMMAND]", "print this help, or a command's flags (also -h, --help)"},
}

func run(args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			cmd, args = "help", args[1:]
		case "-version", "--version":
			cmd, args = "version", args[1:]
		}
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "check-config":
		return checkConfig(args, stdout, stderr)
	case "default-config":
		_, err := stdout.Write(configs.DefaultFile)
		return err
	case "token":
		return token(args, stdout, stderr)
	case "feed":
		return feedCmd(args, stderr)
	case "nats":
		return natsCmd(args, stderr)
	case "record":
		return recordCmd(args, stderr)
	case "healthcheck":
		return healthcheck(args, stdout, stderr)
	case "version":
		_, err := fmt.Fprintln(stdout, buildinfo.Get())
		return err
	case "help":
		if len(args) > 0 && args[0] != "help" {
			return run([]string{args[0], "-h"}, stdout, stdout)
		}
		return usage(stdout)
	default:
		return fmt.Errorf("unknown command %q (marketcast help lists them)", cmd)
	}
}

// usage is the top-level help.
func usage(w io.Writer) error {
	var b strings.Builder
	b.WriteString("marketcast: market-data fan-out over WebSocket\n\nusage: marketcast [COMMAND] [FLAGS]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-15s %s\n", c.name, c.summary)
	}
	b.WriteString(`
"marketcast COMMAND -h" shows a command's flags.

Configuration: the embedded default (marketcast default-config), then -config
FILE over it, then the environment: every key can be set by MARKETCAST_ and its
path upper-cased with _ for . (log.level: MARKETCAST_LOG_LEVEL,
delivery.flush_delay: MARKETCAST_DELIVERY_FLUSH_DELAY; lists comma-separated).
docs/OPERATIONS.md has the rule, the metrics and the deployment files.
`)
	_, err := io.WriteString(w, b.String())
	return err
}

// newFlags is a subcommand's flag set, whose -h says what the command does.
func newFlags(name string, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	i := slices.IndexFunc(commands, func(c struct{ name, args, summary string }) bool { return c.name == name })
	fs.Usage = func() {
		if i >= 0 {
			fmt.Fprintf(fs.Output(), "usage: marketcast %s %s\n\n%s\n\nflags:\n", name, commands[i].args, commands[i].summary)
		}
		fs.PrintDefaults()
	}
	return fs
}

// checkConfig loads the configuration as serve would, checks it and the
// files it names, and prints the result with secrets masked.
func checkConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check-config", stderr)
	file := fs.String("config", "", "config file (default: embedded)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := configs.Load(*file, nil)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err := cfg.CheckServe(); err != nil {
		return err
	}
	if err := checkFiles(cfg); err != nil {
		return err
	}
	b, err := cfg.MaskedYAML()
	if err != nil {
		return err
	}
	if _, err := stdout.Write(b); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "configuration ok: feed %s, %s\n", cfg.FeedKind(), map[bool]string{true: "development mode", false: "production mode"}[cfg.DevMode])
	return nil
}

func token(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", stderr)
	user := fs.String("user", "", "user id (the token's sub claim)")
	perms := fs.String("permissions", protocol.PermReadMarketData+","+protocol.PermReadSignals, "comma-separated permissions")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	file := fs.String("config", "", "config file (default: embedded)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("token: -user is required")
	}
	if *ttl <= 0 {
		return fmt.Errorf("token: -ttl must be > 0, got %v", *ttl)
	}
	cfg, err := configs.Load(*file, nil)
	if err != nil {
		return err
	}
	if !cfg.DevMode && cfg.Auth.JWTSecret == configs.DevSecret {
		// No server of this configuration would accept the token.
		return errors.New("token: dev_mode is false but auth.jwt_secret is the public development secret: " +
			"set MARKETCAST_JWT_SECRET (or auth.jwt_secret) to the servers' secret")
	}
	known := []string{protocol.PermReadMarketData, protocol.PermReadSignals, protocol.PermPublish}
	var list []string
	for _, p := range strings.Split(*perms, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !slices.Contains(known, p) {
			return fmt.Errorf("token: -permissions: unknown permission %q (want %s)", p, strings.Join(known, ", "))
		}
		list = append(list, p)
	}
	tok, err := auth.Issue([]byte(cfg.Auth.JWTSecret), *user, list, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// newLogger builds the process's logger as configured, and reports on it
// what loading the configuration warned about.
func newLogger(cfg *configs.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	var log *slog.Logger
	if cfg.Log.Format == "json" {
		log = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		log = slog.New(slog.NewTextHandler(w, opts))
	}
	for _, warning := range cfg.Warnings() {
		log.Warn(warning)
	}
	return log
}

// durationsAsText logs durations as "5s", not JSON's 5000000000
// nanoseconds (the text handler already does so).
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

func serve(args []string, stderr io.Writer) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcSteady) // gc.go says why, and when it widens
		gcManaged = true
	}
	fs := newFlags("serve", stderr)
	file := fs.String("config", "", "config file (default: embedded)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := configs.Load(*file, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return Serve(ctx, cfg, log, nil)
}

// hostPort turns a wildcard listen address into one a browser can dial.
func hostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
