// Package web serves the demo trading terminal: a static page embedded in
// the binary (it works offline, no CDN) that uses the JavaScript client in
// clients/js.
package web

import (
	"embed"
	"io/fs"
	"net/http"

	jsclient "github.com/marketcast/marketcast/clients/js"
)

//go:embed static
var static embed.FS

// Handler serves the page at / and the client library at /js/.
func Handler() http.Handler {
	root, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /js/", http.StripPrefix("/js/", http.FileServer(http.FS(jsclient.Files))))
	mux.Handle("GET /", http.FileServer(http.FS(root)))
	return mux
}
