package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine/auth"
)

// checkFiles opens what the configuration names on disk, so check-config
// finds an unreadable certificate or key file before a start does. It
// reaches no network: a JWKS URL or a NATS server is checked at start.
func checkFiles(cfg *configs.Config) error {
	if cfg.TLS.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return fmt.Errorf("config: tls: %w", err)
		}
	}
	for _, file := range cfg.Auth.PublicKeys {
		b, err := os.ReadFile(file)
		if err == nil {
			_, err = auth.ParsePublicKeyPEM(b)
		}
		if err != nil {
			return fmt.Errorf("config: auth.public_keys: %s: %w", file, err)
		}
	}
	for key, file := range map[string]string{"cluster.nats_creds": cfg.Cluster.NATSCreds, "feed.replay.file": cfg.Feed.Replay.File} {
		if file == "" {
			continue
		}
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("config: %s: %w", key, err)
		}
		f.Close()
	}
	return nil
}

// healthcheck probes the server this configuration describes, on this
// machine: /healthz, or /readyz with -ready, on the ops listener when there
// is one, else the main one. It is the container image's HEALTHCHECK
// (distroless has no curl), run with the server's own environment.
func healthcheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("healthcheck", stderr)
	file := fs.String("config", "", "config file (default: embedded)")
	ready := fs.Bool("ready", false, "probe /readyz (ready for new clients) instead of /healthz (alive)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := configs.Load(*file, nil)
	if err != nil {
		return err
	}
	addr, scheme := cfg.Listen, "http"
	if cfg.Ops.Listen != "" {
		addr = cfg.Ops.Listen // always plain HTTP
	} else if cfg.TLS.CertFile != "" {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + path
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		// Our own server over loopback: its certificate names the public
		// host, not 127.0.0.1, and there is nobody in between to trust.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
	}}
	res, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 256))
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s %s", url, res.Status, body)
	}
	_, err = fmt.Fprintf(stdout, "%s: %s\n", url, res.Status)
	return err
}
