// Command marketcast is the market-data fan-out server.
//
//	marketcast [serve] [-config FILE]     run the server (default: embedded config)
//	marketcast token -user ID [-permissions a,b] [-ttl 1h] [-config FILE]
//	marketcast feed [-config FILE] [-replay FILE -speed N]   run the market source once for a cluster, publishing to NATS
//	marketcast record -out FILE [-for D]   record the market data crossing NATS, for feed -replay
//	marketcast nats [-listen ADDR] [-store DIR]   run a NATS server with JetStream (a cluster's broker)
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
	"strings"
	"syscall"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/protocol"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "marketcast:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "token":
		return token(args, stdout)
	case "feed":
		return feedCmd(args, stderr)
	case "nats":
		return natsCmd(args, stderr)
	case "record":
		return recordCmd(args, stderr)
	default:
		return fmt.Errorf("unknown command %q (want serve, token, feed, record or nats)", cmd)
	}
}

func token(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
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
	var list []string
	for _, p := range strings.Split(*perms, ",") {
		if p = strings.TrimSpace(p); p != "" {
			list = append(list, p)
		}
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
	opts := &slog.HandlerOptions{Level: level}
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

func serve(args []string, stderr io.Writer) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcSteady) // gc.go says why, and when it widens
		gcManaged = true
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
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
