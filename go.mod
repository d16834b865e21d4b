module sluice

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/coder/websocket v1.8.15
	github.com/pires/go-proxyproto v0.15.0
	golang.org/x/sys v0.50.0
)

require go.uber.org/goleak v1.3.0
