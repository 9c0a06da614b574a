package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves the certificate in a pair of files and picks up
// replaced files without a restart (a renewal by certbot, say): at most
// once a second, on handshakes, it reads both files and reloads when their
// content differs from what it loaded. Content, not modification time:
// renewals copied with cp -p, rsync -t or tar keep an older time.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	sum     [sha256.Size]byte // of the loaded pair's bytes
	checked time.Time
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	certPEM, keyPEM, err := r.read()
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if err := r.load(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return r, nil
}

// read returns both files' bytes.
func (r *certReloader) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(r.certFile); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = os.ReadFile(r.keyFile); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func digest(certPEM, keyPEM []byte) [sha256.Size]byte {
	return sha256.Sum256(bytes.Join([][]byte{certPEM, keyPEM}, []byte{0}))
}

// load installs the pair; r.mu is held on entry or r is not shared yet.
func (r *certReloader) load(certPEM, keyPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	r.cert, r.sum = &cert, digest(certPEM, keyPEM)
	return nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= time.Second {
		r.checked = now
		certPEM, keyPEM, err := r.read()
		switch {
		case err != nil:
			r.log.Warn("tls certificate files unreadable; serving the previous pair", "err", err)
		case digest(certPEM, keyPEM) != r.sum:
			if err := r.load(certPEM, keyPEM); err != nil {
				// A half-written renewal: keep serving the old pair. The
				// same broken files are tried again (and warned about) on
				// the next check.
				r.log.Warn("tls certificate reload failed; serving the previous one", "err", err)
			} else {
				r.log.Info("tls certificate reloaded", "cert", r.certFile)
			}
		}
	}
	return r.cert, nil
}

// tlsConfig is the server's TLS configuration: TLS 1.2 or newer, the
// reloading certificate.
func tlsConfig(r *certReloader) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate, NextProtos: []string{"http/1.1"}}
}

// reload reads the pair now, not at the next once-a-second check: SIGHUP
// (systemctl reload) after a renewal. A pair that does not load leaves the
// previous one served.
func (r *certReloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	certPEM, keyPEM, err := r.read()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	r.checked = r.now()
	return r.load(certPEM, keyPEM)
}
