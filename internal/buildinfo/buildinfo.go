// Package buildinfo is what a binary knows of its own build: the version,
// commit and date the release build stamps in (make release, with -ldflags
// -X), else what the Go toolchain recorded from version control.
package buildinfo

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by the release build:
//
//	-X github.com/marketcast/marketcast/internal/buildinfo.version=v1.2.3
//	-X github.com/marketcast/marketcast/internal/buildinfo.commit=<full hash>
//	-X github.com/marketcast/marketcast/internal/buildinfo.date=<RFC 3339>
//
// The date is the commit's, not the clock's, so building a commit again
// gives the same bytes.
var version, commit, date string

// Info describes the running binary.
type Info struct {
	Version   string // v1.2.3, a git describe, or "devel"
	Commit    string // the full commit hash, or "unknown"
	Date      string // RFC 3339, or "unknown"
	GoVersion string // go1.26.8
	Platform  string // linux/amd64
}

// Get returns the running binary's build information.
func Get() Info {
	i := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	modified := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Commit = cmp.Or(i.Commit, s.Value)
			case "vcs.time":
				i.Date = cmp.Or(i.Date, s.Value)
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			i.Version = cmp.Or(i.Version, v)
		}
	}
	if i.Version == "" {
		i.Version = "devel"
		if modified {
			i.Version += "+dirty"
		}
	}
	i.Commit = cmp.Or(i.Commit, "unknown")
	i.Date = cmp.Or(i.Date, "unknown")
	return i
}

// String is the line `marketcast version` prints.
func (i Info) String() string {
	return fmt.Sprintf("marketcast %s (commit %s, built %s, %s %s)", i.Version, i.Commit, i.Date, i.GoVersion, i.Platform)
}
