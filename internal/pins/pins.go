//go:build pins

// Package pins keeps modules in go.mod that the build needs but no Go code
// imports yet (kernels and firmware are read from the module cache by the
// image builder; the rest are pinned for subsystems under construction).
// The "pins" tag is never set, so nothing here is compiled.
package pins

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/diskfs/go-diskfs"
	_ "github.com/gokrazy/firmware"
	_ "github.com/gokrazy/gokrazy"
	_ "github.com/gokrazy/gokrazy/cmd/dhcp"
	_ "github.com/gokrazy/gokrazy/cmd/ntp"
	_ "github.com/gokrazy/kernel.amd64"
	_ "github.com/gokrazy/kernel.rpi"
	_ "github.com/gokrazy/updater"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/gpustack/gguf-parser-go"
	_ "github.com/klauspost/reedsolomon"
	_ "github.com/libp2p/go-libp2p"
	_ "github.com/libp2p/go-libp2p-kad-dht"
	_ "github.com/libp2p/go-libp2p-pubsub"
	_ "github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	_ "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	_ "github.com/nikolalohinski/gonja/v2"
	_ "github.com/ollama/ollama/api"
	_ "github.com/openai/openai-go/v3"
	_ "github.com/openbao/openbao/sdk/v2/helper/shamir"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/sys/unix"
	_ "periph.io/x/conn/v3/i2c/i2ctest"
	_ "periph.io/x/devices/v3/bmxx80"
	_ "periph.io/x/host/v3"
	_ "pgregory.net/rapid"
)
