// Package js embeds the JavaScript client so the server can serve it
// to the demo page.
package js

import "embed"

// Files holds marketcast.js, the protocol constants it imports and its type
// declarations.
//
//go:embed marketcast.js marketcast.d.ts protocol.js
var Files embed.FS
