module github.com/kvfoot/kvfoot

go 1.26.0

require (
	github.com/ardanlabs/jinja v1.8.0
	github.com/dlclark/regexp2 v1.11.5
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
)
