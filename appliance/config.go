package appliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
)

// ConfigVersion is the version of NodeConfig this build writes.
const ConfigVersion = 2

// ErrConfig marks a node config that cannot be used.
var ErrConfig = errors.New("node config")

// NodeConfig is the steward-editable configuration of one node, stored as
// JSON on /perm. Every stored version is migrated forward on load; the
// fixtures under testdata/ hold one file per version.
type NodeConfig struct {
	Version int `json:"version"`
	// Name is how stewards call the box (also <name>.local on the LAN).
	Name string `json:"name"`
	// Roles this node takes in the mesh: "serve", "relay", "verify", "sense".
	Roles []string `json:"roles"`
	// Location of the box, for bioregional accounting and solar curves.
	Location Location `json:"location"`
	// LANListen is where the LAN page listens (default ":80").
	LANListen string `json:"lanListen"`
	// Bioregion overrides the community's for this box's accounts (a box
	// at the edge of two watersheds); empty: the community's.
	Bioregion string `json:"bioregion,omitempty"`
	// ExternalEngines are OpenAI-compatible engines this box also offers
	// to the mesh (llama-server, Ollama, vLLM on a GPU box next to it),
	// reached by URL with health checks.
	ExternalEngines []ExternalEngine `json:"externalEngines,omitempty"`
}

// ExternalEngine is an OpenAI-compatible engine reached by URL.
type ExternalEngine struct {
	Name   string `json:"name"`             // shown in routing decisions
	URL    string `json:"url"`              // base URL, e.g. http://192.168.1.20:8080
	APIKey string `json:"apiKey,omitempty"` // sent as a bearer token
}

// Location of a node.
type Location struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	Place     string  `json:"place,omitempty"`
}

var nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// DefaultNodeConfig is what a node starts with before a steward edits it.
func DefaultNodeConfig(id *Identity) NodeConfig {
	return NodeConfig{
		Version:   ConfigVersion,
		Name:      "hypha-" + id.shortHex(),
		Roles:     []string{"serve", "relay", "sense"},
		LANListen: ":80",
	}
}

// Validate reports the first problem of c, naming the field.
func (c *NodeConfig) Validate() error {
	if c.Version != ConfigVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrConfig, c.Version, ConfigVersion)
	}
	if !nameRe.MatchString(c.Name) {
		return fmt.Errorf("%w: name %q: use lower-case letters, digits and '-' (it becomes %q.local)", ErrConfig, c.Name, c.Name)
	}
	if c.Location.Latitude < -90 || c.Location.Latitude > 90 || c.Location.Longitude < -180 || c.Location.Longitude > 180 {
		return fmt.Errorf("%w: location %v,%v is not on Earth", ErrConfig, c.Location.Latitude, c.Location.Longitude)
	}
	for _, r := range c.Roles {
		switch r {
		case "serve", "relay", "verify", "sense":
		default:
			return fmt.Errorf("%w: unknown role %q (serve, relay, verify, sense)", ErrConfig, r)
		}
	}
	for i, e := range c.ExternalEngines {
		if err := e.validate(); err != nil {
			return fmt.Errorf("%w: external engine %d: %v", ErrConfig, i+1, err)
		}
	}
	return nil
}

func (e ExternalEngine) validate() error {
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want http://host:port or https://host:port", e.URL)
	}
	if e.Name != "" && !nameRe.MatchString(e.Name) {
		return fmt.Errorf("name %q: use lower-case letters, digits and '-'", e.Name)
	}
	return nil
}

// ParseExternalEngine reads "name=url" or "url" (hyphad's -external flag).
func ParseExternalEngine(s string) (ExternalEngine, error) {
	var e ExternalEngine
	if name, u, ok := strings.Cut(s, "="); ok {
		e.Name, e.URL = name, u
	} else {
		e.URL = s
	}
	if err := e.validate(); err != nil {
		return ExternalEngine{}, fmt.Errorf("external engine %q: %w", s, err)
	}
	return e, nil
}

// ParseNodeConfig decodes a stored config of any known version, migrates
// it to ConfigVersion and validates it.
func ParseNodeConfig(b []byte) (NodeConfig, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return NodeConfig{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if head.Version == nil {
		return NodeConfig{}, fmt.Errorf("%w: no version field", ErrConfig)
	}
	var c NodeConfig
	switch *head.Version {
	case 1:
		// Version 1 had a single "role" string and "listen".
		var v1 struct {
			Name   string `json:"name"`
			Role   string `json:"role"`
			Listen string `json:"listen"`
		}
		if err := strictUnmarshal(b, &v1, "version"); err != nil {
			return NodeConfig{}, err
		}
		c = NodeConfig{Name: v1.Name, LANListen: v1.Listen}
		if v1.Role != "" {
			c.Roles = []string{v1.Role}
		}
	case 2:
		if err := strictUnmarshal(b, &c); err != nil {
			return NodeConfig{}, err
		}
	default:
		return NodeConfig{}, fmt.Errorf("%w: version %d is newer than this build understands (%d)", ErrConfig, *head.Version, ConfigVersion)
	}
	c.Version = ConfigVersion
	if c.LANListen == "" {
		c.LANListen = ":80"
	}
	if err := c.Validate(); err != nil {
		return NodeConfig{}, err
	}
	return c, nil
}

func strictUnmarshal(b []byte, v any, allow ...string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	for _, k := range allow {
		delete(m, k)
	}
	rest, _ := json.Marshal(m)
	dec := json.NewDecoder(bytes.NewReader(rest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return nil
}

// LoadOrCreateNodeConfig reads the config at path or writes the default.
// A config that exists but is bad is an error: the node keeps the file for
// the steward to fix and does not overwrite it.
func LoadOrCreateNodeConfig(path string, id *Identity) (NodeConfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		c := DefaultNodeConfig(id)
		return c, SaveNodeConfig(path, c)
	}
	if err != nil {
		return NodeConfig{}, err
	}
	c, err := ParseNodeConfig(b)
	if err != nil {
		return NodeConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// SaveNodeConfig validates and atomically writes c.
func SaveNodeConfig(path string, c NodeConfig) error {
	if err := c.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o644)
}
