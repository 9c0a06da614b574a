module github.com/lxzan/gws

go 1.20

require (
	github.com/dolthub/maphash v0.1.0
	github.com/klauspost/compress v1.17.9
)
