// Package jsclient embeds the JavaScript client so the server can serve it
// to the demo page.
package jsclient

import "embed"

// Files holds marketcast.js and its type declarations.
//
//go:embed marketcast.js marketcast.d.ts
var Files embed.FS
