package main

import (
	"crypto/tls"
	"fmt"
	"os"

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
