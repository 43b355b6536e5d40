// Package images builds gokrazy-compatible disk images without gok.
//
// It reads a standard gokrazy instance config.json (our own struct with the
// same field names, so an instance stays buildable with upstream gok where
// that is installed), builds the listed packages with CGO_ENABLED=0 and the
// tags gokrazy,netgo,osusergo, and writes a whole disk: GPT with a
// protective MBR, a FAT16 boot partition (SYSLINUX for legacy BIOS,
// systemd-boot for UEFI, or the Raspberry Pi firmware), two squashfs root
// partitions for gokrazy's A/B updates and an ext4 /perm pre-seeded from a
// directory.
package images

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Errors returned by the builder; test with errors.Is.
var (
	ErrConfig        = errors.New("invalid instance config")
	ErrUnknownPkg    = errors.New("unknown package")
	ErrMissingKernel = errors.New("kernel not found")
	ErrDiskTooSmall  = errors.New("target disk too small")
	ErrBootFS        = errors.New("boot file system")
)

// Config is a gokrazy instance config (config.json). Only the fields the
// builder uses are interpreted; unknown fields are rejected so that a typo
// does not silently produce a different image.
type Config struct {
	Hostname        string                   `json:"Hostname"`
	Packages        []string                 `json:"Packages"`
	PackageConfig   map[string]PackageConfig `json:"PackageConfig,omitempty"`
	GokrazyPackages *[]string                `json:"GokrazyPackages,omitempty"`
	KernelPackage   *string                  `json:"KernelPackage,omitempty"`
	FirmwarePackage *string                  `json:"FirmwarePackage,omitempty"`
	SerialConsole   string                   `json:"SerialConsole,omitempty"`
	Update          *UpdateStruct            `json:"Update,omitempty"`
	Environment     []string                 `json:"Environment,omitempty"`
	// BootloaderExtraLines are appended to the Raspberry Pi config.txt.
	BootloaderExtraLines []string `json:"BootloaderExtraLines,omitempty"`
	// Comment lets humans leave a note in the file.
	Comment string `json:"Comment,omitempty"`
}

// PackageConfig configures one program of the image.
type PackageConfig struct {
	GoBuildFlags      []string          `json:"GoBuildFlags,omitempty"`
	GoBuildTags       []string          `json:"GoBuildTags,omitempty"`
	Environment       []string          `json:"Environment,omitempty"`
	CommandLineFlags  []string          `json:"CommandLineFlags,omitempty"`
	ExtraFileContents map[string]string `json:"ExtraFileContents,omitempty"`
	DontStart         bool              `json:"DontStart,omitempty"`
	WaitForClock      bool              `json:"WaitForClock,omitempty"`
}

// UpdateStruct holds how the image is reached for updates.
type UpdateStruct struct {
	Hostname     string `json:"Hostname,omitempty"`
	HTTPPort     string `json:"HTTPPort,omitempty"`
	HTTPSPort    string `json:"HTTPSPort,omitempty"`
	HTTPPassword string `json:"HTTPPassword,omitempty"`
}

var hostnameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ParseConfig decodes and validates a config.json. name is used in errors.
func ParseConfig(name string, b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, ErrConfig, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: %w: trailing data after the JSON object", name, ErrConfig)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

// LoadConfig reads and validates the config.json at path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load instance config: %w", err)
	}
	return ParseConfig(path, b)
}

func (c *Config) validate() error {
	if !hostnameRe.MatchString(c.Hostname) {
		return fmt.Errorf("%w: Hostname %q is not a valid host name (lower-case letters, digits, '-')", ErrConfig, c.Hostname)
	}
	if len(c.Packages) == 0 {
		return fmt.Errorf("%w: Packages is empty: an image needs at least one program", ErrConfig)
	}
	seen := map[string]bool{}
	for _, p := range c.Packages {
		if p == "" || strings.ContainsAny(p, " \t\n") {
			return fmt.Errorf("%w: package path %q is malformed", ErrConfig, p)
		}
		if seen[ProgramName(p)] {
			return fmt.Errorf("%w: two packages build a program named %q", ErrConfig, ProgramName(p))
		}
		seen[ProgramName(p)] = true
	}
	for p := range c.PackageConfig {
		if !seen[ProgramName(p)] {
			return fmt.Errorf("%w: PackageConfig names %q, which is not in Packages", ErrConfig, p)
		}
	}
	if c.KernelPackage == nil || *c.KernelPackage == "" {
		return fmt.Errorf("%w: KernelPackage is not set", ErrMissingKernel)
	}
	return nil
}

// ProgramName is the file name a package's binary gets under /user.
func ProgramName(pkg string) string {
	return pkg[strings.LastIndex(pkg, "/")+1:]
}

// gokrazyPackages returns the system programs (dhcp, ntp…) of the image.
func (c *Config) gokrazyPackages() []string {
	if c.GokrazyPackages != nil {
		return *c.GokrazyPackages
	}
	return []string{"github.com/gokrazy/gokrazy/cmd/dhcp"}
}

// httpPort is where gokrazy's own web UI (and update API) listens.
func (c *Config) httpPort() string {
	if c.Update != nil && c.Update.HTTPPort != "" {
		return c.Update.HTTPPort
	}
	return "80"
}
